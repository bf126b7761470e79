//! What the waiting-room tests share: a gateway with short queue times, a queued sale, and
//! one call per queue route.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flashgate_gateway::auth::Role;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, spawn_app_with};

/// A gateway whose admitter ticks every 50 ms, with the given pass lifetime and idle time.
pub async fn queue_app(pass_ttl_seconds: u64, idle_seconds: u64) -> TestApp {
    spawn_app_with(|s| {
        s.queue.tick_ms = 50;
        s.queue.pass_ttl_seconds = pass_ttl_seconds;
        s.queue.idle_seconds = idle_seconds;
    })
    .await
}

/// A whole second `seconds` from now (MySQL keeps the times to the millisecond; a whole
/// second keeps the arithmetic of the tests plain).
pub fn in_seconds(seconds: i64) -> DateTime<Utc> {
    let at = Utc::now() + chrono::Duration::seconds(seconds);
    DateTime::from_timestamp(at.timestamp(), 0).expect("a time")
}

/// Creates a sale with a waiting room opened a minute ago, starting at `starts_at`;
/// `queue` fields override the room's defaults (100 admissions a second).
pub async fn queued_sale(app: &TestApp, starts_at: DateTime<Utc>, stock: u32, queue: Value) -> u64 {
    let mut room = json!({
        "mode": "draw",
        "opens_at": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
        "admit_per_second": 100,
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut room, queue) {
        base.extend(extra);
    }
    app.sale(json!({
        "stock": stock,
        "starts_at": starts_at.to_rfc3339(),
        "queue": room,
    }))
    .await
}

/// `POST /v1/sales/{id}/queue` as `user`.
pub async fn join(app: &TestApp, sale_id: u64, user: &str) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::POST,
        &format!("/v1/sales/{sale_id}/queue"),
        Some(&token),
        &[],
        None,
    )
    .await
}

/// Joins and returns the new ticket's id.
pub async fn ticket_of(app: &TestApp, sale_id: u64, user: &str) -> String {
    let reply = join(app, sale_id, user).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
    reply.json["ticket_id"]
        .as_str()
        .expect("ticket_id")
        .to_owned()
}

/// `GET /v1/sales/{id}/queue/{ticket}` as `user`.
pub async fn poll(app: &TestApp, sale_id: u64, user: &str, ticket: &str) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::GET,
        &format!("/v1/sales/{sale_id}/queue/{ticket}"),
        Some(&token),
        &[],
        None,
    )
    .await
}

/// `GET /v1/sales/{id}/queue{suffix}` as a shopper (`""`: the room, `"/draw"`: the draw).
pub async fn public(app: &TestApp, sale_id: u64, suffix: &str) -> Reply {
    let token = app.token("onlooker", Role::Shopper);
    app.request(
        Method::GET,
        &format!("/v1/sales/{sale_id}/queue{suffix}"),
        Some(&token),
        &[],
        None,
    )
    .await
}

/// Waits (up to 30 s past the start) for the published draw.
pub async fn wait_for_draw(app: &TestApp, sale_id: u64, starts_at: DateTime<Utc>) -> Value {
    let wait = (starts_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = public(app, sale_id, "/draw").await;
        if reply.status == StatusCode::OK {
            return reply.json;
        }
        assert_eq!(reply.code(), "queue_not_drawn", "{}", reply.json);
        assert!(
            std::time::Instant::now() < deadline,
            "no draw 30 s after the start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `user`'s ticket until its status is `status`; the last view.
pub async fn poll_until(
    app: &TestApp,
    sale_id: u64,
    user: &str,
    ticket: &str,
    status: &str,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = poll(app, sale_id, user, ticket).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        if reply.json["status"] == status {
            return reply.json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{user}'s ticket never became {status}: {}",
            reply.json
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A purchase of one unit with `pass` as the `Queue-Pass` header (none when `None`).
pub async fn buy(app: &TestApp, sale_id: u64, user: &str, pass: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = pass.map(|p| ("queue-pass", p)).into_iter().collect();
    app.purchase_with(sale_id, user, json!({ "quantity": 1 }), &headers)
        .await
}
