//! `/healthz` (the process is alive), `/readyz` (it can serve), `/metrics`.

use http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::response::{Response, json_response, text_response};

/// Always 200 while the process runs.
pub async fn healthz(_app: &App) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
}

/// 200 when Redis and Kafka answer and the process is not draining; else 503 with the reason.
/// The dependency checks are cached for about a second (see `readiness.rs`).
pub async fn readyz(app: &App) -> Result<Response, ApiError> {
    let checks = app
        .readiness
        .checks(&app.redis, &app.producer, &app.metrics)
        .await;
    let (redis_ok, kafka_ok) = (checks.redis, checks.kafka);
    let draining = app.is_draining();
    let ready = redis_ok && kafka_ok && !draining;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json_response(
        status,
        &json!({
            "status": if ready { "ready" } else { "not_ready" },
            "redis": redis_ok,
            "kafka": kafka_ok,
            "draining": draining,
        }),
    ))
}

/// Prometheus text exposition.
pub async fn metrics(app: &App) -> Result<Response, ApiError> {
    let mut text = app.metrics.render();
    app.guards.render(&mut text);
    // Last: the process's CPU, memory and file descriptors, shared with every service.
    text.push_str(&flashgate_config::process::render());
    Ok(text_response(
        StatusCode::OK,
        text,
        "text/plain; version=0.0.4",
    ))
}
