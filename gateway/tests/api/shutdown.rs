//! Graceful shutdown: readiness fails while the gateway drains, a request in flight still gets
//! its answer within the grace, and what was admitted just before the stop reaches the topic
//! (the relay's last pass and the producer's flush).
//!
//! Each test runs a gateway on a runtime of its own, stopped by a channel the test holds;
//! requests to it go over plain connections, each its own, so none is idle when the drain
//! starts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::SaleKeys;
use flashgate_gateway::startup::Application;
use flashgate_gateway::token::Minter;
use fred::prelude::StreamsInterface;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::helpers::{
    consume_all, fresh_database, fresh_topic, order_of_message, spawn_app_with, unique,
};
use crate::private_redis::PrivateRedis;

/// A gateway on `settings`, the sender that stops it gracefully, and how its run ended.
///
/// It runs on a runtime of its own, dropped as soon as `run_until` returns, as the process's
/// exit would: a connection the drain did not wait for dies with it, unanswered.
async fn own_gateway(
    settings: flashgate_config::Settings,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    oneshot::Receiver<anyhow::Result<()>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let (started, bound) = oneshot::channel::<SocketAddr>();
    let (ended, end) = oneshot::channel::<anyhow::Result<()>>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("gateway runtime");
        let result = runtime.block_on(async move {
            let application = Application::build(settings).await.expect("gateway builds");
            let _ = started.send(application.local_addr());
            application
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        // Whatever the drain left running ends here, before the test hears the run ended.
        runtime.shutdown_timeout(Duration::from_secs(1));
        let _ = ended.send(result);
    });
    let addr = bound.await.expect("gateway started");
    (addr, stop, end)
}

/// One request on a connection of its own (`Connection: close`); the status and JSON body, or
/// `None` when the connection ended without an answer.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    send_held(addr, method, path, token, body, None).await
}

/// As `send`, but with `hold` the body's last byte waits for it: the gateway has the request
/// (its handler waits on the body) and it stays in flight for as long as the test wants.
async fn send_held(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    hold: Option<oneshot::Receiver<()>>,
) -> Option<(u16, Value)> {
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&body);
    let (first, last) = head.split_at(head.len() - usize::from(hold.is_some()));
    conn.write_all(first.as_bytes()).await.ok()?;
    if let Some(hold) = hold {
        let _ = hold.await;
        conn.write_all(last.as_bytes()).await.ok()?;
    }
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    Some((status, json))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_draining_and_a_request_in_flight_is_answered_within_the_grace() {
    let redis = PrivateRedis::start().await;
    let app = spawn_app_with(|settings| {
        settings.redis.sentinels.clear();
        settings.redis.url = Some(format!("redis://127.0.0.1:{}", redis.port));
        settings.redis.command_timeout_ms = 10_000;
        settings.gateway.request_timeout_ms = 10_000;
        settings.gateway.shutdown_grace_ms = 5_000;
    })
    .await;
    let sale_id = app.sale(json!({"stock": 10})).await;
    let token = app.token("dora", Role::Shopper);
    let (addr, stop, server) = own_gateway(app.settings.clone()).await;
    // Ready before the stop, its broker connection made (a first metadata request may take
    // longer than the check allows): after the stop only the drain may make it not ready.
    // Each probe waits until the cached checks went stale, so the next one checks again; the
    // last leaves them stale, so the probe sent before the stop waits on Redis.
    let fresh_for = flashgate_gateway::http::readiness::FRESH_FOR;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = send(addr, "GET", "/readyz", None, None)
            .await
            .expect("readiness answered");
        tokio::time::sleep(fresh_for).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready before the stop: {body}"
        );
    }

    // Redis sleeps (less than readiness's one-second check): readiness waits on it, so it is
    // answered only after the stop.
    let awake = redis.hang(0.8).await;
    // Only once Redis really sleeps (a PING of our own goes unanswered) may the requests go:
    // else readiness could be answered before the stop.
    let mut probe = tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .expect("probe connection");
    let mut pong = [0u8; 7];
    let mut sleeping = false;
    for _ in 0..20 {
        probe.write_all(b"PING\r\n").await.expect("PING");
        let answer =
            tokio::time::timeout(Duration::from_millis(50), probe.read_exact(&mut pong)).await;
        if answer.is_err() {
            sleeping = true;
            break;
        }
    }
    assert!(sleeping, "Redis never went to sleep");
    // The purchase is held in flight by its own body, not by Redis: the relay's last pass
    // waits on Redis too, and would keep a gateway that stopped draining alive until the answer.
    let (release, hold) = oneshot::channel::<()>();
    let purchase = tokio::spawn(async move {
        let path = format!("/v1/sales/{sale_id}/purchases");
        let body = json!({"quantity": 1});
        send_held(addr, "POST", &path, Some(&token), Some(body), Some(hold)).await
    });
    let readiness = tokio::spawn(send(addr, "GET", "/readyz", None, None));
    // Nothing can be asked while Redis sleeps: give the server a moment to take both
    // connections before the stop (if it had not, they would get no answer and fail the test).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    let _ = stop.send(());

    awake.await.expect("the server woke up");
    let readiness = readiness.await.expect("task");
    let (status, body) = readiness.expect("readiness answered");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["draining"], true, "{body}");
    assert_eq!(
        (&body["redis"], &body["kafka"]),
        (&json!(true), &json!(true)),
        "only the drain makes it not ready: {body}"
    );
    // Redis is awake and the relay's last pass has nothing to wait for: a gateway that does
    // not wait for the request in flight ends now, and its connection with it.
    let mut server = server;
    let ended_early = tokio::time::timeout(Duration::from_millis(500), &mut server).await;
    assert!(
        ended_early.is_err(),
        "the gateway ended with a request in flight: {ended_early:?}"
    );
    let _ = release.send(());
    let purchase = purchase.await.expect("task");
    let (status, body) = purchase.expect("the request in flight got its answer");
    assert_eq!(status, 202, "{body}");
    server
        .await
        .expect("gateway thread")
        .expect("clean shutdown");
    let stopped_in = stopping.elapsed();
    assert!(
        stopped_in < Duration::from_secs(5),
        "within the grace: {stopped_in:?}"
    );
    assert!(
        send(addr, "GET", "/healthz", None, None).await.is_none(),
        "a stopped gateway accepts nothing"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_admitted_just_before_the_stop_reach_the_topic() {
    // No other gateway: another relay of the group could take the entries.
    let mut settings = crate::helpers::stack_settings();
    settings.redis.key_prefix = unique("fgt");
    let db = fresh_database(&mut settings).await;
    settings.kafka.orders_topic = fresh_topic(&settings, 1).await;
    let minter = Minter::from_settings(&settings.gateway.jwt).expect("minter");
    let hour = Duration::from_secs(3600);
    let token = minter.mint("ivo", &[Role::Shopper], hour).expect("token");
    let manager = minter
        .mint("manager-1", &[Role::Manager], hour)
        .expect("token");
    let (addr, stop, server) = own_gateway(settings.clone()).await;

    // A sale made after the relay listed the outboxes, ten orders, and the stop at once: only
    // the last pass (which lists the outboxes again) can send them before the process ends.
    let now = chrono::Utc::now();
    let (status, sale) = send(
        addr,
        "POST",
        "/v1/admin/sales",
        Some(&manager),
        Some(json!({
            "sku": "SKU-STOP", "title": "Stop", "price": 100, "stock": 100, "per_user_limit": 10,
            "starts_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
        })),
    )
    .await
    .expect("sale made");
    assert_eq!(status, 201, "{sale}");
    let sale_id = sale["sale_id"].as_u64().expect("sale_id");
    let mut admitted = Vec::new();
    for _ in 0..10 {
        let (status, order) = send(
            addr,
            "POST",
            &format!("/v1/sales/{sale_id}/purchases"),
            Some(&token),
            Some(json!({"quantity": 1})),
        )
        .await
        .expect("answer");
        assert_eq!(status, 202, "{order}");
        admitted.push(order["order_id"].as_str().expect("order").to_owned());
    }
    let _ = stop.send(());
    server
        .await
        .expect("gateway thread")
        .expect("clean shutdown");

    // When the gateway is done, nothing is left to send (entries leave the outbox once the
    // broker confirmed them; the gateway's runtime is gone, so nothing would send them later).
    let redis = settings.redis.connect_pool().await.expect("Redis");
    let outbox = SaleKeys::new(&settings.redis.key_prefix, sale_id).outbox;
    let left: u64 = redis.xlen(&outbox).await.expect("XLEN");
    assert_eq!(
        left, 0,
        "the last pass sent and the broker confirmed every order"
    );
    let topic = settings.kafka.orders_topic.clone();
    let sent = tokio::task::spawn_blocking(move || {
        consume_all(&settings, &topic, 10, Duration::from_secs(20))
    })
    .await
    .expect("reader");
    let mut keys: Vec<String> = sent.iter().map(order_of_message).collect();
    keys.sort();
    admitted.sort();
    assert_eq!(keys, admitted, "every admitted order, once");
    flashgate_testkit::drop_database(db).await;
}
