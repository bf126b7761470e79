//! `/healthz` (the process is alive), `/readyz` (it can serve), `/metrics`.

use std::time::Duration;

use fred::interfaces::ClientLike;
use http::StatusCode;
use rdkafka::producer::Producer;
use serde_json::json;

use crate::app::App;
use crate::http::{Response, json_response, text_response};

/// Always 200 while the process runs.
pub fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// 200 when Redis and Kafka answer and the process is not draining; else 503 with the reason.
pub async fn readyz(app: &App) -> Response {
    let redis_ok = tokio::time::timeout(Duration::from_secs(1), app.redis.ping::<String>(None))
        .await
        .is_ok_and(|r| r.is_ok());
    let producer = app.producer.clone();
    let kafka_ok = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(1))
            .is_ok()
    })
    .await
    .unwrap_or(false);
    let draining = app.is_draining();
    let ready = redis_ok && kafka_ok && !draining;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({
            "status": if ready { "ready" } else { "not_ready" },
            "redis": redis_ok,
            "kafka": kafka_ok,
            "draining": draining,
        }),
    )
}

/// Prometheus text exposition.
pub fn metrics(app: &App) -> Response {
    text_response(
        StatusCode::OK,
        app.metrics.render(),
        "text/plain; version=0.0.4",
    )
}
