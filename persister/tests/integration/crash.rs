//! The persister process killed with SIGKILL mid-stream and started again: every order ends up
//! in MySQL exactly once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flashgate_config::Settings;
use rdkafka::producer::FutureProducer;
use sqlx::MySqlPool;

use crate::helpers::{insert_sale, isolated, left_for_the_group, produce_orders};

/// Starts the real binary, configured through its environment.
fn spawn_persister(settings: &Settings, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flashgate-persister"))
        .arg("run")
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
        .env("FLASHGATE__REDIS__KEY_PREFIX", &settings.redis.key_prefix)
        .env(
            "FLASHGATE__KAFKA__CONSUMER_GROUP",
            &settings.kafka.consumer_group,
        )
        .env("FLASHGATE__KAFKA__SESSION_TIMEOUT_MS", "6000")
        .env("FLASHGATE__PERSISTER__BATCH_SIZE", "50")
        .env("FLASHGATE__PERSISTER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FLASHGATE__LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flashgate-persister")
}

async fn count(db: &MySqlPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(db)
        .await
        .expect("count")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persister_killed_mid_stream_and_restarted_persists_each_order_once() {
    let (settings, db) = isolated().await;
    let sale_id = insert_sale(&db, 100_000).await;

    let total: i64 = 3_000;
    let producer: FutureProducer = settings.kafka.producer_config().create().expect("producer");
    produce_orders(&producer, &settings.kafka.orders_topic, sale_id, 0..3_000).await;

    // Kill it once some, not all, orders are written.
    let mut first = spawn_persister(&settings, free_port());
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&db).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the persister never wrote anything"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let at_kill = count(&db).await;

    let mut second = spawn_persister(&settings, free_port());
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&db).await < total {
        assert!(
            Instant::now() < deadline,
            "stuck at {} of {total}",
            count(&db).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Until everything read is committed: the second persister has nothing more to write.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (settings, group) = (settings.clone(), settings.kafka.consumer_group.clone());
        let left: i64 =
            tokio::task::spawn_blocking(move || left_for_the_group(&settings, &group).iter().sum())
                .await
                .expect("reader");
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} messages never committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = second.kill();
    let _ = second.wait();

    assert!(
        at_kill < total,
        "killed before the end ({at_kill} of {total})"
    );
    assert_eq!(count(&db).await, total, "each order once");
    let sold: u32 = sqlx::query_scalar("SELECT sold FROM sales WHERE sale_id = ?")
        .bind(sale_id)
        .fetch_one(&db)
        .await
        .expect("sold");
    assert_eq!(i64::from(sold), total, "sold moved once per order");
}
