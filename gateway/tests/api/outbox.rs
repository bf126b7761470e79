//! The outbox relay: every admitted order reaches the orders topic once in normal operation,
//! and none is lost when the broker goes away for a while; Redis losing its script cache does
//! not stop purchases.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use crate::helpers::{
    consume_all, fresh_database, fresh_topic, order_of_message, spawn_app, stack_settings, start,
    unique,
};

/// Admits `count` purchases by distinct users and returns their order ids.
async fn admit_many(
    app: &crate::helpers::TestApp,
    sale_id: u64,
    tag: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let reply = app.purchase(sale_id, &format!("{tag}-{i}"), 1).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
        ids.push(reply.json["order_id"].as_str().expect("id").to_owned());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_topic_gets_exactly_one_event_per_admitted_order() {
    let app = spawn_app().await;
    let sale_id = app
        .sale(json!({"stock": 30, "per_user_limit": 1, "price": 700}))
        .await;
    let ids = admit_many(&app, sale_id, "buyer", 30).await;

    let settings = app.settings.clone();
    let topic = settings.kafka.orders_topic.clone();
    let events = tokio::task::spawn_blocking(move || {
        consume_all(&settings, &topic, 30, Duration::from_secs(60))
    })
    .await
    .expect("reader");

    assert_eq!(events.len(), 30, "one event per order, no duplicates");
    let keys: HashSet<String> = events.iter().map(order_of_message).collect();
    let expected: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(keys, expected);
    let (key, envelope, headers) = &events[0];
    assert_eq!(envelope["type"], "order.admitted");
    assert_eq!(envelope["version"], 1);
    assert_eq!(
        key,
        &sale_id.to_string(),
        "keyed by sale: its events stay in order"
    );
    assert_eq!(envelope["data"]["sale_id"], sale_id);
    assert_eq!(envelope["data"]["unit_price"], 700);
    assert_eq!(envelope["data"]["amount"], 700);
    assert_eq!(
        headers.get("trace_id"),
        envelope["trace_id"].as_str().map(str::to_owned).as_ref()
    );
    app.stop().await;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A binary from PATH or cargo's bin folder.
fn binary(name: &str) -> PathBuf {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin").join(name));
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .chain(cargo_bin)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found; run scripts/stack.sh up"))
}

/// A server process of this test alone; killed when dropped.
struct Private(Child);

impl Drop for Private {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tansu broker with sqlite storage in `dir` (data survives a restart).
fn start_broker(dir: &Path, port: u16) -> Private {
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(binary("tansu"))
        .args([
            "broker",
            "--cluster-id",
            "flashgate-test",
            "--listener-url",
            &url,
        ])
        .args([
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://tansu.db",
        ])
        .current_dir(dir)
        .env_remove("STORAGE_ENGINE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("broker.log"))
                .map_or_else(|_| Stdio::null(), Stdio::from),
        )
        .spawn()
        .expect("start tansu");
    wait_for_port(port);
    Private(child)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("flashgate-{tag}-")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_admitted_while_the_broker_is_down_reach_the_topic_when_it_returns() {
    // A broker of this test alone, so stopping it disturbs no other test.
    let dir = temp_dir("broker");
    let port = free_port();
    let mut broker = Some(start_broker(&dir, port));
    let mut settings = stack_settings();
    settings.redis.key_prefix = unique("fgt");
    settings.kafka.brokers = format!("127.0.0.1:{port}");
    settings.gateway.relay_claim_idle_ms = 2_000;
    let db = fresh_database(&mut settings).await;
    settings.kafka.orders_topic = fresh_topic(&settings, 2).await;
    let app = start(settings.clone(), db).await;
    let sale_id = app.sale(json!({"stock": 100, "per_user_limit": 1})).await;

    let mut ids = admit_many(&app, sale_id, "before", 10).await;
    drop(broker.take()); // SIGKILL: the broker is gone.
    ids.extend(admit_many(&app, sale_id, "during", 10).await);
    tokio::time::sleep(Duration::from_secs(3)).await; // sends wait; entries stay pending
    broker = Some(start_broker(&dir, port));
    ids.extend(admit_many(&app, sale_id, "after", 5).await);

    let reader_settings = settings.clone();
    let topic = settings.kafka.orders_topic.clone();
    let events = tokio::task::spawn_blocking(move || {
        consume_all(&reader_settings, &topic, 25, Duration::from_secs(90))
    })
    .await
    .expect("reader");
    let delivered: HashSet<String> = events.iter().map(order_of_message).collect();
    let admitted: HashSet<String> = ids.into_iter().collect();
    let missing: Vec<_> = admitted.difference(&delivered).collect();
    assert!(missing.is_empty(), "lost orders: {missing:?}");
    app.stop().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_keep_working_after_redis_restarts_and_forgets_its_scripts() {
    // A Redis of this test alone (with AOF), so restarting it disturbs no other test.
    let dir = temp_dir("redis");
    let port = free_port();
    let start_redis = || {
        let child = Command::new(binary("redis-server"))
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_for_port(port);
        Private(child)
    };
    let redis = start_redis();
    let mut settings = stack_settings();
    settings.redis.sentinels = Vec::new();
    settings.redis.url = Some(format!("redis://127.0.0.1:{port}"));
    settings.redis.key_prefix = unique("fgt");
    let db = fresh_database(&mut settings).await;
    settings.kafka.orders_topic = fresh_topic(&settings, 1).await;
    let app = start(settings, db).await;
    let sale_id = app.sale(json!({"stock": 10, "per_user_limit": 1})).await;
    assert_eq!(
        app.purchase(sale_id, "u1", 1).await.status,
        StatusCode::ACCEPTED
    );

    drop(redis);
    let _redis = start_redis();
    // The client reconnects by itself; the script cache is empty now.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let reply = app.purchase(sale_id, "u2", 1).await;
        if reply.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    let view = app.get_sale(sale_id).await;
    assert_eq!(view.json["remaining"], 8, "AOF kept the first purchase");
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_the_outbox_without_sending_an_order_twice() {
    let first = spawn_app().await;
    let second = start(first.settings.clone(), first.db.clone()).await;
    let sale_id = first.sale(json!({"stock": 40, "per_user_limit": 1})).await;
    let mut ids = admit_many(&first, sale_id, "one", 20).await;
    ids.extend(admit_many(&second, sale_id, "two", 20).await);

    let settings = first.settings.clone();
    let topic = settings.kafka.orders_topic.clone();
    let events = tokio::task::spawn_blocking(move || {
        consume_all(&settings, &topic, 40, Duration::from_secs(60))
    })
    .await
    .expect("reader");

    let mut keys: Vec<String> = events.iter().map(order_of_message).collect();
    keys.sort();
    ids.sort();
    assert_eq!(keys, ids, "each order exactly once");
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_left_pending_by_a_dead_relay_are_claimed_and_sent() {
    // The first gateway reads entries into its pending list but can never deliver them.
    let dead_broker = free_port();
    let first = crate::helpers::spawn_app_with(|s| {
        s.kafka.brokers = format!("127.0.0.1:{dead_broker}");
        s.kafka.message_timeout_ms = 1_000;
        s.gateway.shutdown_grace_ms = 2_000;
    })
    .await;
    let sale_id = first.sale(json!({"stock": 10, "per_user_limit": 1})).await;
    let ids = admit_many(&first, sale_id, "stuck", 10).await;
    let outbox =
        flashgate_gateway::keys::SaleKeys::new(&first.settings.redis.key_prefix, sale_id).outbox;
    let holders = wait_for_pending(&first.redis, &outbox, 10).await;
    assert_eq!(holders.len(), 1, "one relay holds them all: {holders:?}");
    let mut settings = first.settings.clone();
    let db = first.db.clone();
    first.stop().await;

    // Another gateway with a working broker claims them after the idle time.
    settings.kafka.brokers = stack_settings().kafka.brokers;
    settings.gateway.relay_claim_idle_ms = 1_000;
    let second = start(settings.clone(), db).await;
    let topic = settings.kafka.orders_topic.clone();
    let reader = settings.clone();
    let events = tokio::task::spawn_blocking(move || {
        consume_all(&reader, &topic, 10, Duration::from_secs(60))
    })
    .await
    .expect("reader");

    let delivered: HashSet<String> = events.iter().map(order_of_message).collect();
    let admitted: HashSet<String> = ids.into_iter().collect();
    assert_eq!(delivered, admitted);
    // The claimed entries were acknowledged once sent: none is left pending.
    wait_for_pending(&second.redis, &outbox, 0).await;
    second.stop().await;
}

/// Polls `XPENDING` of the relays' group on `stream` until `count` entries are pending or
/// 20 s passed; returns (consumer, entries pending in it).
async fn wait_for_pending(
    redis: &fred::prelude::Pool,
    stream: &str,
    count: u64,
) -> Vec<(String, u64)> {
    use fred::prelude::ClientLike;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Of the relays' group `relay`. Summary form: [total, smallest id, largest id,
        // [[consumer, count], ...]]; an error until the relay made its group.
        let reply: Result<fred::prelude::Value, _> = redis
            .custom(fred::cmd!("XPENDING"), vec![stream, "relay"])
            .await;
        let summary = reply
            .map(fred::prelude::Value::into_array)
            .unwrap_or_default();
        let total = summary.first().and_then(fred::prelude::Value::as_u64);
        let holders: Vec<(String, u64)> = summary
            .get(3)
            .map(|v| v.clone().into_array())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|pair| {
                let pair = pair.into_array();
                let name = pair.first()?.as_string()?;
                let held = pair.get(1)?.as_u64()?;
                Some((name, held))
            })
            .collect();
        if total == Some(count) {
            return holders;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: {total:?} pending, never {count} ({holders:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
