//! The route table, and dispatch through it with the provider's latency and metrics around
//! every request. Each route is listed once — method, path pattern, name, whether it waits the
//! latency, handler — and the dispatch, the 405 answer and the metrics' route label all come
//! from it.

use std::pin::Pin;

use http::Method;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::routes::{charges, health, refund};

/// A handler's answer, boxed once per request so that every route fits one table.
type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;

/// One route.
struct Route {
    method: Method,
    /// The path's segments after the leading `/`; `{name}` stands for any one segment, at
    /// most once per pattern (the handler gets it as its last argument).
    pattern: &'static str,
    /// The route's label in metrics.
    name: &'static str,
    /// Whether the answer waits `psp.latency_ms` first (the API does; probes do not).
    delayed: bool,
    handler: for<'a> fn(&'a App, Request, &'a str) -> Reply<'a>,
}

/// A route.
macro_rules! route {
    ($method:ident $pattern:literal $name:literal, delayed: $delayed:literal => $handler:expr) => {
        Route {
            method: Method::$method,
            pattern: $pattern,
            name: $name,
            delayed: $delayed,
            handler: |app, req, param| Box::pin($handler(app, req, param)),
        }
    };
}

/// Every route, searched in order.
static ROUTES: [Route; 7] = [
    route!(POST "charges" "charge_create", delayed: true => charges::create),
    route!(GET "charges" "charge_list", delayed: true => charges::list),
    route!(GET "charges/{id}" "charge_get", delayed: true => charges::get),
    route!(POST "charges/{id}/refund" "charge_refund", delayed: true => refund::refund),
    route!(GET "healthz" "healthz", delayed: false => health::healthz),
    route!(GET "readyz" "readyz", delayed: false => health::readyz),
    route!(GET "metrics" "metrics", delayed: false => health::metrics),
];

/// Handles one request; never fails (errors become JSON answers).
pub async fn handle(app: &App, req: Request) -> Response {
    let _in_flight = app.metrics.in_flight();
    let path = req.uri().path().to_owned();
    let (name, result) = match find(req.method(), path.trim_matches('/')) {
        Ok((route, param)) => {
            if route.delayed {
                tokio::time::sleep(app.latency()).await;
            }
            (route.name, (route.handler)(app, req, param).await)
        }
        Err(err @ ApiError::MethodNotAllowed) => ("method_not_allowed", Err(err)),
        Err(err) => ("not_found", Err(err)),
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    app.metrics
        .observe_request(name, response.status().as_u16());
    response
}

/// The route for `method` on `path` (trimmed of `/`) and the path's parameter; 405 when the
/// path is a route's but the method is not, 404 when no route has the path.
fn find<'p>(method: &Method, path: &'p str) -> Result<(&'static Route, &'p str), ApiError> {
    let mut path_known = false;
    for route in &ROUTES {
        if let Some(param) = fit(route.pattern, path) {
            if route.method == method {
                return Ok((route, param));
            }
            path_known = true;
        }
    }
    Err(if path_known {
        ApiError::MethodNotAllowed
    } else {
        ApiError::NotFound
    })
}

/// The parameter of `path` (the segment under `{..}`, "" when there is none) if `path` has
/// the segments of `pattern`.
fn fit<'p>(pattern: &str, path: &'p str) -> Option<&'p str> {
    let mut param = "";
    let mut segments = path.split('/');
    for want in pattern.split('/') {
        let segment = segments.next()?;
        if want.starts_with('{') {
            param = segment;
        } else if want != segment {
            return None;
        }
    }
    segments.next().is_none().then_some(param)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(method: Method, path: &str) -> Result<(&'static str, &str), &'static str> {
        find(&method, path.trim_matches('/'))
            .map(|(route, param)| (route.name, param))
            .map_err(|err| err.code())
    }

    #[test]
    fn paths_find_their_route_and_parameter_and_others_get_404_or_405() {
        assert_eq!(
            route_of(Method::POST, "/charges"),
            Ok(("charge_create", ""))
        );
        assert_eq!(route_of(Method::GET, "/charges/"), Ok(("charge_list", "")));
        assert_eq!(
            route_of(Method::GET, "/charges/ch_1"),
            Ok(("charge_get", "ch_1"))
        );
        assert_eq!(
            route_of(Method::POST, "/charges/ch_1/refund"),
            Ok(("charge_refund", "ch_1"))
        );
        assert_eq!(
            route_of(Method::DELETE, "/charges/ch_1"),
            Err("method_not_allowed")
        );
        assert_eq!(
            route_of(Method::POST, "/metrics"),
            Err("method_not_allowed")
        );
        assert_eq!(
            route_of(Method::GET, "/charges/ch_1/refund/x"),
            Err("not_found")
        );
        assert_eq!(route_of(Method::GET, "/"), Err("not_found"));
    }

    #[test]
    fn every_route_is_listed_once_with_at_most_one_parameter() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert!(route.pattern.matches('{').count() <= 1, "{}", route.pattern);
            for other in &ROUTES[i + 1..] {
                assert!(
                    route.name != other.name
                        && (route.method != other.method || route.pattern != other.pattern),
                    "{} twice",
                    route.name
                );
            }
        }
    }
}
