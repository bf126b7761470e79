//! The live sale console's stream (`GET /v1/admin/events`) on the real stack: snapshots arrive
//! with a sale's live counters, only a manager may open one, and streams are bounded (a cap
//! per gateway, and they end when the gateway shuts down).

use std::time::Duration;

use bytes::Bytes;
use flashgate_gateway::auth::Role;
use flashgate_gateway::console::stream::MAX_STREAMS;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Opens the stream with `token`; the response with its body unread.
async fn open(app: &TestApp, token: Option<&str>) -> http::Response<Incoming> {
    // A client of its own per stream: each holds its connection for as long as it reads.
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::get(format!("http://{}/v1/admin/events", app.addr));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    client
        .request(request.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("gateway answers")
}

/// Reads the stream until an event named `name` whose data satisfies `wanted` (or the
/// stream ends, or 15 s pass): that event's data.
async fn next_event(
    body: &mut Incoming,
    buffer: &mut String,
    name: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let event = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("message");
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            let data: Value = serde_json::from_str(data).expect("event data is JSON");
            if event == name && wanted(&data) {
                return Some(data);
            }
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .ok()??;
        if let Ok(data) = frame.expect("stream frame").into_data() {
            buffer.push_str(std::str::from_utf8(&data).expect("UTF-8"));
        }
    }
}

fn line_of(snapshot: &Value, sale_id: u64) -> Option<&Value> {
    snapshot["sales"]
        .as_array()?
        .iter()
        .find(|line| line["sale_id"] == sale_id)
}

#[tokio::test]
async fn the_events_stream_sends_each_open_sale_with_counters_that_move_as_shoppers_buy() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 10, "per_user_limit": 5})).await;
    let manager = app.token("console-manager", Role::Manager);

    let response = open(&app, Some(&manager)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut buffer = String::new();
    let first = next_event(&mut body, &mut buffer, "snapshot", |s| {
        line_of(s, sale_id).is_some()
    })
    .await
    .expect("a snapshot with the sale");
    let line = line_of(&first, sale_id).unwrap();
    assert_eq!(
        (&line["remaining"], &line["admitted"], &line["status"]),
        (&json!(10), &json!(0), &json!("active"))
    );
    for field in ["persisted", "paid", "cancelled", "expired", "outbox_length"] {
        assert_eq!(line[field], 0, "{field}: {line}");
    }

    for user in ["buyer-1", "buyer-2", "buyer-3"] {
        assert_eq!(
            app.purchase(sale_id, user, 2).await.status,
            StatusCode::ACCEPTED
        );
    }
    let moved = next_event(&mut body, &mut buffer, "snapshot", |s| {
        line_of(s, sale_id).is_some_and(|l| l["admitted"] == 6)
    })
    .await
    .expect("a later snapshot shows the purchases");
    let line = line_of(&moved, sale_id).unwrap();
    assert_eq!(line["remaining"], 4);
    assert!(
        line["admitted_per_second"].as_f64().unwrap() > 0.0,
        "{line}"
    );
    app.stop().await;
}

#[tokio::test]
async fn only_a_manager_may_open_the_events_stream() {
    let app = spawn_app().await;
    let nobody = open(&app, None).await;
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
    let shopper = app.token("console-shopper", Role::Shopper);
    let refused = open(&app, Some(&shopper)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn a_gateway_caps_its_open_streams_and_ends_them_all_when_it_shuts_down() {
    let app = spawn_app().await;
    let manager = app.token("console-manager", Role::Manager);
    let mut streams = Vec::new();
    for _ in 0..MAX_STREAMS {
        let response = open(&app, Some(&manager)).await;
        assert_eq!(response.status(), StatusCode::OK);
        streams.push(response.into_body());
    }
    let over = open(&app, Some(&manager)).await;
    assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(over.headers().contains_key("retry-after"));

    // Every stream, read to its end in the background while the gateway shuts down.
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut body| {
            tokio::spawn(async move {
                let mut buffer = String::new();
                next_event(&mut body, &mut buffer, "end", |_| true).await
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the gateway stops with streams open");
    for reader in readers {
        let end = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the stream ends")
            .unwrap();
        assert!(end.is_some(), "each stream says it ends");
    }
}
