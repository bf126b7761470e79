//! A Redis primary dies: Sentinel promotes the replica and the gateway follows by itself, and
//! cancellations in flight give nothing back twice.
//!
//! This test stops the shared stack's primary, so `scripts/test.sh` runs it alone, after
//! every other test (it lives in a module named `disruptive`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::SaleKeys;
use fred::prelude::{ClientLike, HashesInterface, KeysInterface, Pool, SortedSetsInterface};
use http::{Method, StatusCode};
use serde_json::json;

use flashgate_testkit::stack;

use crate::helpers::{TestApp, spawn_app};

async fn primary_port(redis: &Pool) -> u16 {
    let info: String = redis
        .custom(fred::cmd!("INFO"), vec!["server"])
        .await
        .expect("INFO server");
    info.lines()
        .find_map(|l| l.strip_prefix("tcp_port:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("tcp_port in INFO")
}

/// Starts a stopped Redis server of the stack again when dropped, so a failed assertion does
/// not leave the shared stack without it.
struct Restart(String);

impl Drop for Restart {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A second panic here would abort the run: try, and say so if it fails.
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh");
            let started = std::process::Command::new(script)
                .args(["start", self.0.as_str()])
                .status();
            if !started.is_ok_and(|s| s.success()) {
                eprintln!("could not start {} again: run scripts/stack.sh up", self.0);
            }
        } else {
            stack(&["start", &self.0]);
        }
    }
}

/// How many replicas acknowledge the writes so far (`WAIT 1 500`, asked until one does or a
/// minute passed), once the primary has a replica online again: a server the previous test stopped and started may still be
/// syncing (a minute at most), and a `WAIT` longer than the client's command timeout would
/// fail on the client's side.
async fn replica_acknowledges(redis: &Pool) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info: String = redis
            .custom(fred::cmd!("INFO"), vec!["replication"])
            .await
            .expect("INFO replication");
        if info
            .lines()
            .any(|l| l.starts_with("slave0:") && l.contains("state=online"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the primary never had a replica online"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A replica that just synced may still be busy: ask again, half a second at a time.
    loop {
        let acknowledged: i64 = redis
            .custom(fred::cmd!("WAIT"), vec![1, 500])
            .await
            .expect("WAIT");
        if acknowledged >= 1 || Instant::now() > deadline {
            return acknowledged;
        }
    }
}

/// Consecutive admissions that show the gateway settled on the new primary.
const SETTLED_RUN: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_purchases_going_without_losing_acknowledged_stock() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 200, "per_user_limit": 1})).await;
    let mut admitted = 0;
    for i in 0..5 {
        assert_eq!(
            app.purchase(sale_id, &format!("pre-{i}"), 1).await.status,
            StatusCode::ACCEPTED
        );
        admitted += 1;
    }
    // Make sure the replica has those writes before the primary dies.
    let acknowledged = replica_acknowledges(&app.redis).await;
    assert!(acknowledged >= 1, "no replica acknowledged the writes");
    let old_primary = primary_port(&app.redis).await;

    let server = format!("redis-{old_primary}");
    stack(&["stop", &server]);
    let restart = Restart(server);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut i, mut run) = (0, 0);
    while run < SETTLED_RUN {
        i += 1;
        let reply = app.purchase(sale_id, &format!("during-{i}"), 1).await;
        match reply.status {
            StatusCode::ACCEPTED => {
                admitted += 1;
                run += 1;
                continue;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(reply.headers.contains_key("retry-after"));
                run = 0;
            }
            other => panic!(
                "during the failover only 202 or 503 are fair, got {other}: {}",
                reply.json
            ),
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never settled on the new primary ({run} admitted in a row)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_primary = primary_port(&app.redis).await;
    drop(restart);

    assert_ne!(new_primary, old_primary, "Sentinel promoted the replica");
    let view = app.get_sale(sale_id).await;
    assert_eq!(view.json["remaining"], 200 - admitted, "{}", view.json);
    assert_eq!(view.json["admitted"], admitted);
    app.stop().await;
}

/// `POST /v1/orders/{id}/cancel` as `user` until it is answered for good (200, or 409 when the
/// order had ended otherwise); 503s during the failover are retried.
async fn cancel_until_answered(app: &TestApp, order_id: &str, user: &str) -> StatusCode {
    let token = app.token(user, Role::Shopper);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = app
            .request(
                Method::POST,
                &format!("/v1/orders/{order_id}/cancel"),
                Some(&token),
                &[],
                None,
            )
            .await;
        match reply.status {
            StatusCode::OK | StatusCode::CONFLICT => return reply.status,
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("a cancel during a failover got {other}: {}", reply.json),
        }
        assert!(
            Instant::now() < deadline,
            "the cancel of {order_id} never got through"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_during_cancellations_gives_nothing_back_twice_and_holds_nothing_past_pay_by() {
    let app = spawn_app().await;
    let total = 40;
    let sale_id = app
        .sale(json!({"stock": total, "per_user_limit": 1, "payment_window_seconds": 30}))
        .await;
    let mut orders = Vec::new();
    for i in 0..total {
        let user = format!("c-{i}");
        let reply = app.purchase(sale_id, &user, 1).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
        orders.push((
            reply.json["order_id"].as_str().expect("id").to_owned(),
            user,
        ));
    }
    let acknowledged = replica_acknowledges(&app.redis).await;
    assert!(acknowledged >= 1, "no replica acknowledged the orders");
    let old_primary = primary_port(&app.redis).await;

    // Cancel them one after another; the primary dies after the first ten.
    let server = format!("redis-{old_primary}");
    let mut restart = None;
    for (i, (order_id, user)) in orders.iter().enumerate() {
        if i == 10 {
            stack(&["stop", &server]);
            restart = Some(Restart(server.clone()));
        }
        let answer = cancel_until_answered(&app, order_id, user).await;
        assert_eq!(answer, StatusCode::OK, "{order_id}");
    }
    let new_primary = primary_port(&app.redis).await;
    assert_ne!(new_primary, old_primary, "Sentinel promoted the replica");
    drop(restart);

    // A cancel the old primary acknowledged but did not pass on is lost with it: that order is
    // held again, and expires at its pay_by. Within pay_by + 5 s nothing is held, and every
    // unit came back exactly once.
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let deadline = Instant::now() + Duration::from_secs(30 + 5 + 5);
    loop {
        let held: u64 = app.redis.zcard(&keys.holds).await.expect("holds");
        if held == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{held} orders still held past pay_by + 5 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stock: i64 = app.redis.get(&keys.stock).await.expect("stock");
    let (held, paid): (i64, Option<i64>) = app
        .redis
        .hmget(&keys.sale, vec!["held", "paid"])
        .await
        .expect("sale");
    assert_eq!(
        (stock, held, paid.unwrap_or(0)),
        (i64::from(total), 0, 0),
        "every unit back once"
    );
    let records: HashMap<String, String> = app.redis.hgetall(&keys.orders).await.expect("records");
    for (order_id, _) in &orders {
        let state = records[order_id]
            .split('\n')
            .nth(4)
            .unwrap_or_default()
            .to_owned();
        assert!(
            state == "cancelled" || state == "expired",
            "{order_id} ended {state}"
        );
    }
    app.stop().await;
}
