//! The contract: the OpenAPI 3.1 document of the gateway's API (`gateway/openapi.json`, built
//! into the binary), served at `GET /openapi.json`, and the readable page made from it once,
//! served at `GET /docs` (no script, nothing fetched from the network).

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;

use crate::app::App;
use crate::http::docs_page;
use crate::http::error::ApiError;
use crate::http::response::{Response, json_bytes};

/// The document, as kept in the repository. Tests hold it to the route table.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// The page, rendered from the document the first time it is asked for.
static PAGE: OnceLock<String> = OnceLock::new();

/// `GET /openapi.json`: the document.
pub async fn document(_app: &App) -> Result<Response, ApiError> {
    Ok(json_bytes(
        StatusCode::OK,
        Bytes::from_static(DOCUMENT.as_bytes()),
    ))
}

/// `GET /docs`: the document as an HTML page.
pub async fn page(_app: &App) -> Result<Response, ApiError> {
    let page = PAGE.get_or_init(|| {
        let document = serde_json::from_str(DOCUMENT).expect("gateway/openapi.json is JSON");
        docs_page::render(&document)
    });
    let mut response = http::Response::new(Full::new(Bytes::from_static(page.as_bytes())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::http::router;

    const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("gateway/openapi.json is JSON")
    }

    /// A route: (METHOD, /path, name, public, roles).
    type Shape = (String, String, String, bool, Vec<String>);

    /// Every operation of the document: its `operationId` is the route's name; it is public
    /// when it asks for no token (`security: []`); `x-roles` are the roles that may call it
    /// (none: any authenticated caller).
    fn documented() -> BTreeSet<Shape> {
        let mut operations = BTreeSet::new();
        for (path, item) in document()["paths"].as_object().expect("paths") {
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let mut roles: Vec<String> = operation["x-roles"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} has no x-roles"))
                    .iter()
                    .map(|r| r.as_str().expect("a role is a string").to_owned())
                    .collect();
                roles.sort();
                let id = operation["operationId"].as_str().unwrap_or_default();
                let public = operation["security"] == serde_json::json!([]);
                operations.insert((
                    method.to_uppercase(),
                    path.clone(),
                    id.to_owned(),
                    public,
                    roles,
                ));
            }
        }
        operations
    }

    /// Every route of the router, in the same shape.
    fn served() -> BTreeSet<Shape> {
        router::routes()
            .map(|route| {
                let mut roles: Vec<String> =
                    route.roles.iter().map(|r| r.as_str().to_owned()).collect();
                roles.sort();
                (
                    route.method.to_string(),
                    format!("/{}", route.pattern),
                    route.name.to_owned(),
                    route.public,
                    roles,
                )
            })
            .collect()
    }

    #[test]
    fn the_document_and_the_router_list_the_same_routes_methods_names_and_roles() {
        let (documented, served) = (documented(), served());
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "served but not documented (or documented differently): {undocumented:#?}\n\
             documented but not served: {unserved:#?}"
        );
    }

    #[test]
    fn operations_that_need_a_token_say_so_and_document_its_refusals() {
        for (path, item) in document()["paths"].as_object().expect("paths") {
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let security = &operation["security"];
                if security == &serde_json::json!([]) {
                    continue;
                }
                assert_eq!(
                    security,
                    &serde_json::json!([{"bearer": []}]),
                    "{method} {path}"
                );
                let responses = &operation["responses"];
                assert!(responses.get("401").is_some(), "{method} {path}: 401");
                let has_roles = operation["x-roles"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty());
                assert_eq!(
                    responses.get("403").is_some(),
                    has_roles,
                    "{method} {path}: 403 exactly when roles are required"
                );
            }
        }
    }

    /// The codes the crate's source can answer: the fixed ones of `ApiError::code` and every
    /// literal given to `ApiError::conflict`.
    fn codes_in_source() -> BTreeSet<String> {
        let mut codes = BTreeSet::new();
        let mut files = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            if path.ends_with("http/error.rs") {
                let start = text.find("pub fn code(&self)").expect("ApiError::code");
                let body = &text[start..];
                let body = &body[..body.find("\n    }\n").expect("end of code()")];
                codes.extend(body.split('"').skip(1).step_by(2).map(str::to_owned));
            }
            for (at, _) in text.match_indices("conflict(") {
                let rest = text[at + "conflict(".len()..].trim_start();
                let code = rest
                    .strip_prefix('"')
                    .and_then(|literal| literal.split_once('"'))
                    .map(|(code, _)| code);
                if let Some(code) =
                    code.filter(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                {
                    codes.insert(code.to_owned());
                }
            }
        }
        codes
    }

    #[test]
    fn every_error_code_the_gateway_can_answer_is_in_the_document() {
        let documented: BTreeSet<String> = document()["components"]["schemas"]["Error"]
            ["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the Error schema's code enum")
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let in_source = codes_in_source();
        assert!(in_source.contains("sold_out") && in_source.contains("invalid_request"));
        let missing: Vec<_> = in_source.difference(&documented).collect();
        assert!(missing.is_empty(), "codes the document lacks: {missing:?}");
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        let document = document();
        let mut stack = vec![&document];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let pointer = target.strip_prefix('#').expect("a local reference");
                        assert!(document.pointer(pointer).is_some(), "{target} is missing");
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
    }
}
