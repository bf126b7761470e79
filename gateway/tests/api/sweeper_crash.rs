//! The process running the lifecycle sweeper killed with SIGKILL in the middle of a pass, and
//! another started: every unit comes back exactly once, and nothing stays held past its
//! `pay_by` + 5 s after the restart.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flashgate_config::Settings;
use flashgate_gateway::keys::SaleKeys;
use fred::prelude::{HashesInterface, KeysInterface, SortedSetsInterface};
use serde_json::json;

use crate::helpers::{TEST_SECRET, run_out_window, shopper_counts, spawn_app_with};

/// A gateway process, killed (SIGKILL) and reaped when dropped, so a failed assertion never
/// leaves it running.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real gateway binary on `port`, configured through its environment like
/// `settings` (this test's key prefix, database and topics).
fn spawn_gateway(settings: &Settings, port: u16) -> Gateway {
    Gateway(
        Command::new(env!("CARGO_BIN_EXE_flashgate-gateway"))
            .env("FLASHGATE__GATEWAY__LISTEN", format!("127.0.0.1:{port}"))
            .env("FLASHGATE__GATEWAY__JWT__SECRET", TEST_SECRET)
            .env("FLASHGATE__GATEWAY__LIFECYCLE_SWEEP_INTERVAL_MS", "200")
            // One order per script call: the pass lasts long enough to be killed in the middle.
            .env("FLASHGATE__GATEWAY__LIFECYCLE_EXPIRE_BATCH", "1")
            .env("FLASHGATE__REDIS__KEY_PREFIX", &settings.redis.key_prefix)
            .env("FLASHGATE__MYSQL__URL", settings.mysql.url.expose())
            .env("FLASHGATE__KAFKA__BROKERS", &settings.kafka.brokers)
            .env(
                "FLASHGATE__KAFKA__ORDERS_TOPIC",
                &settings.kafka.orders_topic,
            )
            .env(
                "FLASHGATE__KAFKA__COUPONS_TOPIC",
                &settings.kafka.coupons_topic,
            )
            .env(
                "FLASHGATE__KAFKA__POINTS_TOPIC",
                &settings.kafka.points_topic,
            )
            .env("FLASHGATE__LOG__FILTER", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flashgate-gateway"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// Waits until the gateway on `port` answers `/readyz` with 200 (a minute at most): from then
/// on it is recovered, and its sweeper runs.
async fn wait_ready(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = stream
                .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            if answer.starts_with(b"HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the gateway never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweeper_killed_mid_pass_gives_each_unit_back_once_after_a_restart() {
    // This gateway takes the orders; its own sweeper never comes round.
    let app = spawn_app_with(|s| s.gateway.lifecycle_sweep_interval_ms = 3_600_000).await;
    let orders = 300u32;
    let sale_id = app
        .sale(json!({"stock": orders, "per_user_limit": 1}))
        .await;
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let mut tasks = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for i in 0..orders {
        let app = app.clone();
        tasks.spawn(async move {
            // A busy machine may shed a purchase (503): the same key gets it done once.
            let (user, key) = (format!("s-{i}"), format!("buy-{i}"));
            let body = json!({"quantity": 1});
            for _ in 0..20 {
                let reply = app
                    .purchase_with(sale_id, &user, body.clone(), &[("Idempotency-Key", &key)])
                    .await;
                if reply.status != http::StatusCode::SERVICE_UNAVAILABLE {
                    return reply.status;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            http::StatusCode::SERVICE_UNAVAILABLE
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("task"), http::StatusCode::ACCEPTED);
    }
    // Every order's window runs out now.
    let held: Vec<String> = app
        .redis
        .zrange(&keys.holds, 0, -1, None, false, None, false)
        .await
        .expect("holds");
    assert_eq!(held.len(), orders as usize);
    for order_id in &held {
        run_out_window(&app, sale_id, order_id).await;
    }

    // A gateway whose sweeper expires them, killed once it has done some but not all.
    let first = spawn_gateway(&app.settings, free_port());
    let deadline = Instant::now() + Duration::from_secs(60);
    let left_at_kill = loop {
        let left: u64 = app.redis.zcard(&keys.holds).await.expect("holds");
        if left < u64::from(orders) {
            drop(first);
            break app.redis.zcard::<u64, _>(&keys.holds).await.expect("holds");
        }
        assert!(
            Instant::now() < deadline,
            "the sweeper never expired anything"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert!(
        left_at_kill > 0,
        "killed mid-pass ({left_at_kill} left of {orders})"
    );

    // Another starts: within 5 s of being up, everything left is expired, each unit back
    // once.
    let port = free_port();
    let second = spawn_gateway(&app.settings, port);
    wait_ready(port).await;
    let restarted = Instant::now();
    loop {
        let left: u64 = app.redis.zcard(&keys.holds).await.expect("holds");
        if left == 0 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "{left} orders still held 5 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(second);
    let stock: i64 = app.redis.get(&keys.stock).await.expect("stock");
    let (held, paid): (i64, Option<i64>) = app
        .redis
        .hmget(&keys.sale, vec!["held", "paid"])
        .await
        .expect("sale");
    assert_eq!(stock, i64::from(orders), "each unit back exactly once");
    assert_eq!((held, paid.unwrap_or(0)), (0, 0));
    let buyers = shopper_counts(&app, &keys.buyers).await;
    assert!(
        buyers.is_empty(),
        "every buyer's count back to nothing: {buyers:?}"
    );
    let records: std::collections::HashMap<String, String> =
        app.redis.hgetall(&keys.orders).await.expect("records");
    let expired = records
        .values()
        .filter(|r| r.contains("\nexpired\n"))
        .count();
    assert_eq!(expired, orders as usize, "each order expired once");
    std::sync::Arc::into_inner(app)
        .expect("tasks done")
        .stop()
        .await;
}
