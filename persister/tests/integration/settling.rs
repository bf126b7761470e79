//! Settling the points caches when Redis does not answer after the commit: the batch is retried
//! (its writes are idempotent) and settles once Redis answers again.

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
