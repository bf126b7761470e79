//! Settling the points caches when Redis does not answer after the commit (the batch is retried,
//! its writes idempotent, and settles once Redis answers again), and when two persister
//! instances settle the same uses at once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flashgate_events::keys::PointsKeys;
use fred::prelude::{ClientLike, HashesInterface};

use crate::persisting::{prepare, wait_for};
use crate::points::{cache, fields, give, send_use};

/// A `redis-server` of this test alone on `port`; killed when dropped.
struct PrivateRedis(Child);

impl PrivateRedis {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by scripts/stack.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self(child)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `user`'s cache until it equals `expected` or a minute passed; returns the last.
async fn cache_becomes(
    redis: &fred::prelude::Pool,
    key: &str,
    expected: &std::collections::HashMap<String, String>,
) -> std::collections::HashMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = cache(redis, key).await;
        if &now == expected || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_committed_while_redis_does_not_answer_is_retried_and_settles_when_it_does() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _server = PrivateRedis::start(port).await;
    let mut running = prepare().await;
    running.settings.redis.sentinels.clear();
    running.settings.redis.url = Some(format!("redis://127.0.0.1:{port}"));
    running.settings.redis.command_timeout_ms = 300;
    running.resume().await;
    let mut patient = running.settings.redis.clone();
    patient.command_timeout_ms = 10_000;
    let redis = patient.connect_pool().await.expect("Redis");
    let key = PointsKeys::for_user(&running.settings.redis.key_prefix, "sam").balance("sam");
    give(&running, "sam", 100).await;
    // A first use settles as usual: the persister is consuming and reaches Redis.
    let _: () = redis
        .next()
        .hset(
            &key,
            fields(&[
                ("balance", "90"),
                ("version", "1"),
                ("pending", "10"),
                ("tx:use-s0", "10"),
            ]),
        )
        .await
        .expect("HSET");
    send_use(&running, "sam", "use-s0", 10).await;
    let first = fields(&[("balance", "90"), ("version", "2"), ("pending", "0")]);
    assert_eq!(cache_becomes(&redis, &key, &first).await, first);

    // The gateway takes 30 more, then Redis stops answering for a few seconds.
    let _: () = redis
        .next()
        .hset(
            &key,
            fields(&[("balance", "60"), ("pending", "30"), ("tx:use-s1", "30")]),
        )
        .await
        .expect("HSET");
    let _: String = redis
        .next()
        .custom(fred::cmd!("CLIENT"), vec!["PAUSE", "4000", "ALL"])
        .await
        .expect("CLIENT PAUSE");
    send_use(&running, "sam", "use-s1", 30).await;
    let committed = "SELECT COUNT(*) FROM point_ledger WHERE txid = 'use-s1' AND reason = 'use'";
    assert_eq!(running.wait_count(committed, 1).await, 1, "MySQL has it");
    assert!(
        wait_for(&running.metrics.retries, 1).await >= 1,
        "the batch is retried"
    );

    let settled = fields(&[("balance", "60"), ("version", "3"), ("pending", "0")]);
    let last = cache_becomes(&redis, &key, &settled).await;
    assert_eq!(last, settled, "settled once Redis answered");
    assert_eq!(running.wait_count(committed, 1).await, 1, "written once");
    redis.quit().await.expect("QUIT");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_persisters_settling_the_same_uses_at_once_leave_every_cache_right_or_dropped() {
    let running = crate::persisting::start().await;
    // A second instance that reads every message too (as two instances do with the same
    // partitions during a rebalance): both write, find written, and settle the same users.
    let mut other_settings = running.settings.clone();
    other_settings.kafka.consumer_group = flashgate_testkit::unique("flashgate-test-twin-");
    let other_metrics = std::sync::Arc::new(flashgate_persister::metrics::Metrics::default());
    let other = flashgate_persister::consumer::Persister::new(
        other_settings,
        running.db.clone(),
        other_metrics.clone(),
    )
    .await
    .expect("persister");
    let (stop_other, other_stopped) = tokio::sync::watch::channel(false);
    let other = tokio::spawn(other.run(other_stopped));
    let redis = running.settings.redis.connect_pool().await.expect("Redis");
    let users: Vec<String> = (0..8).map(|n| format!("twin-{n}")).collect();
    let mut keys = Vec::new();
    for user in &users {
        give(&running, user, 1_000).await;
        // The cache as the gateway leaves it after ten uses of 10 from version 1.
        let key = PointsKeys::for_user(&running.settings.redis.key_prefix, user).balance(user);
        let mut cache_fields = vec![
            ("balance".to_owned(), "900".to_owned()),
            ("version".to_owned(), "1".to_owned()),
            ("pending".to_owned(), "100".to_owned()),
        ];
        cache_fields.extend((0..10).map(|i| (format!("tx:use-{user}-{i}"), "10".to_owned())));
        let _: () = redis.next().hset(&key, cache_fields).await.expect("HSET");
        keys.push(key);
    }
    for i in 0..10 {
        for user in &users {
            send_use(&running, user, &format!("use-{user}-{i}"), 10).await;
        }
    }

    let uses = "SELECT COUNT(*) FROM point_ledger WHERE reason = 'use'";
    assert_eq!(running.wait_count(uses, 80).await, 80);
    // Both handled all 80 (one wrote each use, the other found it written) and settled.
    let handled = |m: &flashgate_persister::metrics::Metrics| {
        m.points_written.load(std::sync::atomic::Ordering::Relaxed)
            + m.duplicates.load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (handled(&running.metrics) < 80 || handled(&other_metrics) < 80)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (handled(&running.metrics), handled(&other_metrics)),
        (80, 80)
    );
    for (user, key) in users.iter().zip(&keys) {
        let (balance, version) = crate::points::balance_row(&running, user).await;
        assert_eq!(balance, 900, "{user}");
        // Right (MySQL's balance at its version, nothing pending), or dropped with a floor
        // that keeps a rebuild from reading an older snapshot; never anything else.
        let version = version.to_string();
        let right = fields(&[("balance", "900"), ("version", &version), ("pending", "0")]);
        let last = cache(&redis, key).await;
        let dropped = !last.contains_key("balance") && last.contains_key("floor");
        assert!(last == right || dropped, "{user}: {last:?}");
    }
    let _ = stop_other.send(true);
    other.await.expect("task").expect("clean stop");
    redis.quit().await.expect("QUIT");
    running.stop().await;
}
