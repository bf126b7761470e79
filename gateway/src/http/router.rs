//! The route table, and dispatch through it with a trace id, a timeout and metrics around
//! every request. Each route is listed once — method, path pattern, name, who may call it,
//! handler — and the dispatch, the 405 answer and the metrics' route label all come from it.

use std::pin::Pin;
use std::time::Instant;

use http::{HeaderValue, Method};
use tracing::Instrument;

use crate::app::App;
use crate::http::auth::Role;
use crate::http::error::{ApiError, Overload};
use crate::http::request::{Call, Request};
use crate::http::response::Response;
use crate::http::trace::Trace;
use crate::http::{health, openapi};
use crate::limits::address::Peer;
use crate::limits::headers::{POLICY, STATE};
use crate::limits::limiter::Judged;
use crate::limits::{Quota, class_of};
use crate::metrics::Dependency;
use crate::routes::{
    admin_orders, admin_policies, admin_sales, console, coupons, orders, payments, points,
    purchase, queue, revocation,
};
use flashgate_config::RateClass;

/// A handler's answer, boxed once per request so that every route fits one table.
type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;

/// Who may call a route, and the handler that serves it.
enum Access {
    /// Anyone (probes, metrics): the handler needs only the state.
    Public(for<'a> fn(&'a App) -> Reply<'a>),
    /// A caller holding one of the roles (a 403 names the first), authenticated before the
    /// handler runs.
    Caller(&'static [Role], for<'a> fn(&'a App, Call<'a>) -> Reply<'a>),
}

/// One route.
struct Route {
    method: Method,
    /// The path's segments after the leading `/`; `{name}` stands for any one segment, at
    /// most twice per pattern (the handler gets the first as `Call::param` and reads a second
    /// from the path).
    pattern: &'static str,
    /// The route's label in metrics.
    name: &'static str,
    access: Access,
}

const SHOPPER: &[Role] = &[Role::Shopper];
const MANAGER: &[Role] = &[Role::Manager];
const MANAGER_OR_OPS: &[Role] = &[Role::Manager, Role::Ops];
const OPS: &[Role] = &[Role::Ops];
/// Any authenticated caller, whatever its roles.
const ANYONE: &[Role] = &[];

/// A route anyone may call.
macro_rules! public {
    ($method:ident $pattern:literal $name:literal => $handler:expr) => {
        Route {
            method: Method::$method,
            pattern: $pattern,
            name: $name,
            access: Access::Public(|app| Box::pin($handler(app))),
        }
    };
}

/// A route for callers with one of `$roles`.
macro_rules! caller {
    ($method:ident $pattern:literal $name:literal, $roles:expr => $handler:expr) => {
        Route {
            method: Method::$method,
            pattern: $pattern,
            name: $name,
            access: Access::Caller($roles, |app, call| Box::pin($handler(app, call))),
        }
    };
}

/// Every route, searched in order: the purchase, the hot path, comes first.
static ROUTES: [Route; 37] = [
    caller!(POST "v1/sales/{sale_id}/purchases" "purchase", SHOPPER => purchase::purchase),
    public!(GET "healthz" "healthz" => health::healthz),
    public!(GET "readyz" "readyz" => health::readyz),
    public!(GET "metrics" "metrics" => health::metrics),
    public!(GET "openapi.json" "openapi" => openapi::document),
    public!(GET "docs" "docs" => openapi::page),
    public!(GET "console" "console" => console::page),
    caller!(GET "v1/orders/{order_id}" "order_status", SHOPPER => orders::get),
    caller!(GET "v1/me/orders" "my_orders", SHOPPER => orders::list_mine),
    caller!(POST "v1/orders/{order_id}/cancel" "order_cancel", SHOPPER => orders::cancel),
    caller!(POST "v1/orders/{order_id}/payment" "order_payment", SHOPPER => payments::pay),
    caller!(POST "v1/admin/orders/{order_id}/cancel" "admin_cancel_order", MANAGER_OR_OPS => admin_orders::cancel),
    caller!(POST "v1/admin/orders/{order_id}/mark-paid" "admin_mark_paid", MANAGER_OR_OPS => admin_orders::mark_paid),
    caller!(POST "v1/admin/sales" "admin_create_sale", MANAGER => admin_sales::create),
    caller!(GET "v1/admin/sales" "admin_list_sales", MANAGER => admin_sales::list),
    caller!(POST "v1/admin/sales/restore" "admin_restore_sales", MANAGER_OR_OPS => admin_sales::restore),
    caller!(GET "v1/admin/sales/{sale_id}" "admin_get_sale", MANAGER => admin_sales::get),
    caller!(PATCH "v1/admin/sales/{sale_id}" "admin_patch_sale", MANAGER => admin_sales::patch),
    caller!(GET "v1/admin/events" "admin_events", MANAGER => console::events),
    caller!(POST "v1/coupon-policies/{policy_id}/claims" "coupon_claim", SHOPPER => coupons::claim),
    caller!(GET "v1/me/coupons" "my_coupons", SHOPPER => coupons::list_mine),
    caller!(POST "v1/coupons/{coupon_id}/redeem" "coupon_redeem", SHOPPER => coupons::redeem),
    caller!(POST "v1/coupons/{coupon_id}/cancel-redemption" "coupon_cancel_redemption", SHOPPER => coupons::cancel_redemption),
    caller!(GET "v1/me/points" "my_points", SHOPPER => points::balance),
    caller!(GET "v1/me/points/history" "my_points_history", SHOPPER => points::history),
    caller!(POST "v1/me/points/use" "points_use", SHOPPER => points::use_points),
    caller!(POST "v1/me/points/use/{txid}/cancel" "points_cancel", SHOPPER => points::cancel_use),
    caller!(POST "v1/admin/coupon-policies" "admin_create_policy", MANAGER => admin_policies::create),
    caller!(GET "v1/admin/coupon-policies" "admin_list_policies", MANAGER => admin_policies::list),
    caller!(GET "v1/admin/coupon-policies/{policy_id}" "admin_get_policy", MANAGER => admin_policies::get),
    caller!(PATCH "v1/admin/coupon-policies/{policy_id}" "admin_patch_policy", MANAGER => admin_policies::patch),
    caller!(POST "v1/auth/logout" "logout", ANYONE => revocation::logout),
    caller!(POST "v1/admin/users/{user_id}/revoke-tokens" "admin_revoke_user_tokens", OPS => revocation::revoke_user_tokens),
    caller!(POST "v1/sales/{sale_id}/queue" "queue_join", SHOPPER => queue::join),
    caller!(GET "v1/sales/{sale_id}/queue" "queue_state", ANYONE => queue::state),
    caller!(GET "v1/sales/{sale_id}/queue/draw" "queue_draw", ANYONE => queue::draw),
    caller!(GET "v1/sales/{sale_id}/queue/{ticket_id}" "queue_ticket", SHOPPER => queue::ticket),
];

/// A route as the API's contract (`gateway/openapi.json`) describes it.
pub struct RouteInfo {
    /// Its method.
    pub method: &'static Method,
    /// Its path pattern, without the leading `/`.
    pub pattern: &'static str,
    /// Its name: the metrics' label, the document's `operationId`.
    pub name: &'static str,
    /// Whether it needs no token.
    pub public: bool,
    /// The roles that may call it (none: anyone when public, else any authenticated caller).
    pub roles: &'static [Role],
}

/// Every route of the table, for the test that holds the contract to it.
pub fn routes() -> impl Iterator<Item = RouteInfo> {
    ROUTES.iter().map(|route| {
        let (public, roles) = match &route.access {
            Access::Public(_) => (true, &[][..]),
            Access::Caller(roles, _) => (false, *roles),
        };
        RouteInfo {
            method: &route.method,
            pattern: route.pattern,
            name: route.name,
            public,
            roles,
        }
    })
}

/// Handles one request; never fails (errors become JSON responses).
pub async fn handle(app: &App, req: Request) -> Response {
    let started = Instant::now();
    let trace = Trace::of(req.headers());
    let trace_id = &trace.id;
    let path = req.uri().path().to_owned();
    let found = find(req.method(), path.trim_matches('/'));
    // Every line logged while serving it (a 500's cause too) carries the trace id: the same
    // span field the persister uses for an order's work. A route on an order names it too,
    // from the path, so an order's lines in every binary are found by its id. The field is
    // set as the span is made: recording it later costs the JSON log layer a re-encoding.
    let order_id = match &found {
        Ok((route, param))
            if route.pattern.contains("{order_id}")
                && flashgate_events::ids::fits(param, flashgate_events::ids::ORDER_ID_MAX_LEN) =>
        {
            Some(*param)
        }
        _ => None,
    };
    let span = match order_id {
        Some(order_id) => tracing::info_span!("request", trace_id = %trace_id, order_id),
        None => tracing::info_span!("request", trace_id = %trace_id),
    };
    let (name, result) = match found {
        Ok((route, param)) => (
            route.name,
            serve(app, route, req, param, trace_id)
                .instrument(span.clone())
                .await,
        ),
        Err(err @ ApiError::MethodNotAllowed) => ("method_not_allowed", Err(err)),
        Err(err) => ("not_found", Err(err)),
    };
    let mut response =
        span.in_scope(|| result.unwrap_or_else(|err| err.into_response(&app.metrics)));
    if response.status() == http::StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110: a 405 names the methods the path has.
        if let Ok(value) = HeaderValue::from_str(&allowed(path.trim_matches('/'))) {
            response.headers_mut().insert(http::header::ALLOW, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(trace_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if let Some(value) = trace.traceparent() {
        response.headers_mut().insert("traceparent", value);
    }
    app.metrics
        .observe_request(name, response.status().as_u16(), started.elapsed());
    response
}

/// Authenticates the caller when the route needs one, then runs the handler within the
/// request timeout.
async fn serve(
    app: &App,
    route: &'static Route,
    mut req: Request,
    param: &str,
    trace_id: &str,
) -> Result<Response, ApiError> {
    let mut limited = None;
    let reply = match &route.access {
        Access::Public(handler) => handler(app),
        Access::Caller(roles, handler) => {
            let caller = app.verifier.authenticate(req.headers())?;
            app.revocation.check(&caller, &app.metrics)?;
            caller.require_any(roles)?;
            let class = class_of(route.name);
            limited = Some((
                class,
                rate_limit(app, class, &caller.user_id, &mut req).await?,
            ));
            handler(
                app,
                Call {
                    req,
                    caller,
                    param,
                    trace_id,
                },
            )
        }
    };
    let mut result = match tokio::time::timeout(app.settings.gateway.request_timeout(), reply).await
    {
        Ok(result) => result,
        Err(_) => Err(ApiError::overloaded(Overload::Timeout)),
    };
    if let (Ok(response), Some((class, quota))) = (&mut result, limited) {
        if let Some(policy) = app.limiter.policy(class) {
            response.headers_mut().insert(POLICY, policy.clone());
        }
        if let Some(state) = quota.header() {
            response.headers_mut().insert(STATE, state);
        }
    }
    result
}

/// Judges the rate limits of a `class` request by `user`: the purchase and the claim in their
/// own script (only the client address is found here, for it), every other class by
/// `lua/rate_limit.lua` now. A 429 when a limit refuses; a limiter Redis cannot run lets the
/// request through, counted as a Redis error.
async fn rate_limit(
    app: &App,
    class: RateClass,
    user: &str,
    req: &mut Request,
) -> Result<Quota, ApiError> {
    let peer = req.extensions().get::<Peer>().map(|peer| peer.0);
    let client = app.limiter.client(class, peer, req.headers());
    if let Some(client) = client {
        req.extensions_mut().insert(client);
    }
    if matches!(class, RateClass::Purchase | RateClass::Claim) {
        return Ok(Quota::default());
    }
    let judged = app
        .limiter
        .check(
            &app.redis,
            &app.scripts.rate_limit,
            app.prefix(),
            class,
            user,
            client,
        )
        .await;
    match judged {
        Ok(quota) => Ok(quota),
        Err(Judged::Limited(refusal)) => Err(ApiError::RateLimited(refusal)),
        Err(Judged::Failed(err)) => {
            app.metrics.dependency_error(Dependency::Redis);
            tracing::debug!(error = %err, "rate limit not judged; request let through");
            Ok(Quota::default())
        }
    }
}

/// The route for `method` on `path` (trimmed of `/`) and the path's parameter; 405 when the
/// path is a route's but the method is not, 404 when no route has the path. Among the routes
/// the path fits, only the most literal ones count (as OpenAPI has a concrete path win over a
/// templated one): `/v1/admin/sales/restore` is the restore route's path, not sale "restore".
fn find<'p>(method: &Method, path: &'p str) -> Result<(&'static Route, &'p str), ApiError> {
    let mut path_known = false;
    for (route, param) in fitting(path) {
        if route.method == method {
            return Ok((route, param));
        }
        path_known = true;
    }
    Err(if path_known {
        ApiError::MethodNotAllowed
    } else {
        ApiError::NotFound("no such route".into())
    })
}

/// The routes `path` fits that have the most literal segments, with the path's parameter.
fn fitting(path: &str) -> impl Iterator<Item = (&'static Route, &str)> {
    let literal = |route: &Route| {
        route
            .pattern
            .split('/')
            .filter(|s| !s.starts_with('{'))
            .count()
    };
    let best = ROUTES
        .iter()
        .filter(|route| fit(route.pattern, path).is_some())
        .map(literal)
        .max();
    ROUTES.iter().filter_map(move |route| {
        let param = fit(route.pattern, path)?;
        (Some(literal(route)) == best).then_some((route, param))
    })
}

/// The parameter of `path` (the segment under `{..}`, "" when there is none) if `path` has
/// the segments of `pattern`.
fn fit<'p>(pattern: &str, path: &'p str) -> Option<&'p str> {
    let mut param = "";
    let mut seen_param = false;
    let mut segments = path.split('/');
    for want in pattern.split('/') {
        let segment = segments.next()?;
        if want.starts_with('{') {
            // The first parameter; a handler with a second reads it from the path.
            if !seen_param {
                param = segment;
                seen_param = true;
            }
        } else if want != segment {
            return None;
        }
    }
    segments.next().is_none().then_some(param)
}

/// The methods of the routes `path` (trimmed of `/`) fits: a 405's `Allow`.
fn allowed(path: &str) -> String {
    let mut methods: Vec<&str> = fitting(path)
        .map(|(route, _)| route.method.as_str())
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods.join(", ")
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
    fn paths_find_their_route_and_parameter() {
        assert_eq!(
            route_of(Method::POST, "/v1/sales/42/purchases"),
            Ok(("purchase", "42"))
        );
        assert_eq!(
            route_of(Method::POST, "/v1/me/points/use/use-1/cancel"),
            Ok(("points_cancel", "use-1"))
        );
        assert_eq!(
            route_of(Method::POST, "/v1/admin/sales/restore/"),
            Ok(("admin_restore_sales", ""))
        );
        assert_eq!(
            route_of(Method::GET, "/v1/admin/sales/7"),
            Ok(("admin_get_sale", "7"))
        );
        assert_eq!(route_of(Method::GET, "/healthz"), Ok(("healthz", "")));
    }

    #[test]
    fn a_known_path_with_another_method_is_405_and_an_unknown_path_404() {
        assert_eq!(
            route_of(Method::GET, "/v1/sales/42/purchases"),
            Err("method_not_allowed")
        );
        assert_eq!(
            route_of(Method::DELETE, "/v1/admin/sales/7"),
            Err("method_not_allowed")
        );
        assert_eq!(
            route_of(Method::POST, "/metrics"),
            Err("method_not_allowed")
        );
        // The restore route's own path: its other methods are 405, not a sale "restore".
        assert_eq!(
            route_of(Method::PATCH, "/v1/admin/sales/restore"),
            Err("method_not_allowed")
        );
        assert_eq!(
            route_of(Method::GET, "/v1/admin/sales/restore"),
            Err("method_not_allowed")
        );
        assert_eq!(route_of(Method::GET, "/v1/sales/42"), Err("not_found"));
        assert_eq!(route_of(Method::GET, "/"), Err("not_found"));
        assert_eq!(route_of(Method::GET, "/v1/me/orders/x"), Err("not_found"));
    }

    #[test]
    fn a_405_allows_the_methods_of_the_most_literal_routes_the_path_fits() {
        assert_eq!(allowed("v1/sales/42/purchases"), "POST");
        assert_eq!(allowed("v1/admin/sales/7"), "GET, PATCH");
        assert_eq!(allowed("v1/admin/sales/restore"), "POST");
    }

    #[test]
    fn every_route_is_listed_once_with_at_most_two_parameters() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert!(route.pattern.matches('{').count() <= 2, "{}", route.pattern);
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
