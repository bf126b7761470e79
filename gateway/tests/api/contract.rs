//! The contract as a client reads it from a running gateway: `GET /openapi.json` is the
//! document kept in the repository, `GET /docs` a page of it that needs no network, and a 405
//! names the methods the path has.

use http::{Method, StatusCode};

use crate::helpers::spawn_app;

const DOCUMENT: &str = include_str!("../../openapi.json");

#[tokio::test]
async fn the_gateway_serves_its_openapi_document_and_a_page_of_it_without_a_token() {
    let app = spawn_app().await;

    let document = app
        .request(Method::GET, "/openapi.json", None, &[], None)
        .await;
    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(document.headers["content-type"], "application/json");
    assert_eq!(document.bytes, DOCUMENT.as_bytes());
    assert_eq!(document.json["openapi"], "3.1.0");

    let page = app.request(Method::GET, "/docs", None, &[], None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let html = String::from_utf8(page.bytes.to_vec()).expect("UTF-8");
    assert!(html.contains("<code>/v1/sales/{sale_id}/purchases</code>"));
    assert!(html.contains("<code>idempotency_key_reused</code>"));
    for remote in ["<script", "http://", "https://", "//cdn"] {
        assert!(!html.contains(remote), "the page loads nothing: {remote}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_405_carries_allow_with_the_methods_of_the_path() {
    let app = spawn_app().await;
    let reply = app
        .request(Method::DELETE, "/v1/admin/sales/7", None, &[], None)
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET, PATCH");
    let reply = app
        .request(Method::GET, "/openapi.json/", None, &[], None)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a trailing slash is the same path"
    );
    let reply = app.request(Method::POST, "/docs", None, &[], None).await;
    assert_eq!(reply.headers["allow"], "GET");
    app.stop().await;
}
