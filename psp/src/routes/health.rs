//! `/healthz` (the process is alive), `/readyz` (it takes charges), `/metrics`.

use http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::response::{Response, json_response, text_response};

/// Always 200 while the process runs.
pub async fn healthz(_: &App, _: Request, _: &str) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
}

/// 200 until shutdown begins, then 503 (the provider depends on nothing else).
pub async fn readyz(app: &App, _: Request, _: &str) -> Result<Response, ApiError> {
    let draining = app.is_draining();
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        &json!({
            "status": if draining { "not_ready" } else { "ready" },
            "draining": draining,
        }),
    ))
}

/// Prometheus text exposition: the provider's metrics, then the process's (CPU, memory).
pub async fn metrics(app: &App, _: Request, _: &str) -> Result<Response, ApiError> {
    let counts = app.provider.counts();
    let mut text = app.metrics.render(counts);
    text.push_str(&flashgate_config::process::render());
    Ok(text_response(
        StatusCode::OK,
        text,
        "text/plain; version=0.0.4",
    ))
}
