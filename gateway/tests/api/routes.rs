//! The route table as the documentation lists it: every documented route answers its method,
//! and every other method on its path gets 405 with the `method_not_allowed` error body.

use std::collections::{BTreeMap, BTreeSet};

use http::{Method, StatusCode};

use crate::helpers::spawn_app;

/// The gateway's routes as `docs/api.md` and `docs/operations.md` document them
/// ("`METHOD /path`"): path (each `{parameter}` written `{}`) → its methods.
fn documented_routes() -> BTreeMap<String, BTreeSet<String>> {
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for doc in ["api.md", "operations.md"] {
        let path = format!("{}/../docs/{doc}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for (at, _) in text.match_indices('`') {
            let Some((method, rest)) = text[at + 1..].split_once(' ') else {
                continue;
            };
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method)
                || !rest.starts_with('/')
            {
                continue;
            }
            let end = rest.find(['`', ' ', '?']).unwrap_or(rest.len());
            let pattern: Vec<&str> = rest[..end]
                .split('/')
                .map(|s| if s.starts_with('{') { "{}" } else { s })
                .collect();
            routes
                .entry(pattern.join("/"))
                .or_default()
                .insert(method.to_owned());
        }
    }
    routes
}

/// Whether `path` has the segments of `pattern` (`{}` fits any one segment).
fn fits(pattern: &str, path: &str) -> bool {
    let (want, have): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    want.len() == have.len() && want.iter().zip(&have).all(|(w, h)| *w == "{}" || w == h)
}

#[tokio::test]
async fn every_route_answers_405_method_not_allowed_to_its_other_methods() {
    let app = spawn_app().await;
    let routes = documented_routes();
    let count: usize = routes.values().map(BTreeSet::len).sum();
    // The table's 37 routes: the probes, the contract and its page, the console and its
    // events, the shopper's, the manager's, logout and revoke-tokens, the waiting room's four.
    assert_eq!(count, 37, "{routes:#?}");

    let others = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    for pattern in routes.keys() {
        let path = pattern.replace("{}", "1");
        // `/v1/admin/sales/restore` fits a sale's pattern too, but the concrete path wins (as
        // in OpenAPI): only the most literal patterns that fit count.
        let literal = |pattern: &str| pattern.split('/').filter(|s| *s != "{}").count();
        let fitting: Vec<_> = routes
            .iter()
            .filter(|(other, _)| fits(other, &path))
            .collect();
        let best = fitting.iter().map(|(other, _)| literal(other)).max();
        let methods: BTreeSet<&str> = fitting
            .iter()
            .filter(|(other, _)| Some(literal(other)) == best)
            .flat_map(|(_, methods)| methods.iter().map(String::as_str))
            .collect();
        for method in &others {
            let reply = app.request(method.clone(), &path, None, &[], None).await;
            if methods.contains(method.as_str()) {
                assert!(
                    ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED]
                        .contains(&reply.status),
                    "{method} {path} is documented, got {}: {}",
                    reply.status,
                    reply.json
                );
            } else {
                assert_eq!(
                    (reply.status, reply.code()),
                    (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
                    "{method} {path}: {}",
                    reply.json
                );
                assert!(
                    reply.json["error"]["message"].is_string(),
                    "{method} {path}: {}",
                    reply.json
                );
            }
        }
    }
    app.stop().await;
}
