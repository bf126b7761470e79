//! MariaDB stops mid-stream and comes back: nothing lost, nothing duplicated.
//!
//! This test stops the shared stack's MariaDB, so `scripts/test.sh` runs it alone, after every
//! other test (it lives in a module named `disruptive`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use flashgate_events::OrderAdmitted;
use flashgate_persister::consumer::Persister;
use flashgate_persister::db;
use flashgate_persister::metrics::Metrics;
use flashgate_testkit::{fresh_database, fresh_topic, stack_settings, unique};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::MySqlPool;
use tokio::sync::watch;

fn stack(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh");
    let status = Command::new(script)
        .args(args)
        .status()
        .expect("run stack.sh");
    assert!(status.success(), "stack.sh {args:?} failed");
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    sale_id: u64,
    range: std::ops::Range<u32>,
) {
    for n in range {
        let order = OrderAdmitted {
            order_id: format!("{sale_id}-{n:08}"),
            sale_id,
            user_id: format!("u{n}"),
            quantity: 1,
            unit_price: 100,
            amount: 100,
            admitted_at: Utc::now(),
        };
        let payload = serde_json::to_vec(&order.clone().into_envelope("t".into())).expect("json");
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&order.order_id)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
}

async fn count(db: &MySqlPool) -> Option<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(db)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_stopped_mid_stream_then_started_loses_and_duplicates_nothing() {
    let mut settings = stack_settings();
    let db = fresh_database(&mut settings).await;
    db::migrate(&db).await.expect("migrate");
    settings.kafka.orders_topic = fresh_topic(&settings, "flashgate.test-orders-", 2).await;
    settings.kafka.consumer_group = unique("flashgate-test-persister-");
    let sale_id = sqlx::query(
        "INSERT INTO sales (sku, title, price, total, per_user_limit, starts_at, ends_at) \
         VALUES ('SKU', 'T', 100, 100000, 1, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) + INTERVAL 1 HOUR)",
    )
    .execute(&db)
    .await
    .expect("sale")
    .last_insert_id();
    let metrics = Arc::new(Metrics::default());
    let persister =
        Persister::new(settings.clone(), db.clone(), metrics.clone()).expect("persister");
    let (stop, stopped) = watch::channel(false);
    let consuming = tokio::spawn(persister.run(stopped));
    let producer: FutureProducer = settings.kafka.producer_config().create().expect("producer");
    let topic = settings.kafka.orders_topic.clone();

    produce(&producer, &topic, sale_id, 0..300).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&db).await.unwrap_or(0) < 300 {
        assert!(Instant::now() < deadline, "first half never persisted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack(&["stop", "mariadb"]);
    produce(&producer, &topic, sale_id, 300..600).await;
    // Longer than the pool's acquire timeout (5 s): batches fail and are retried meanwhile.
    tokio::time::sleep(Duration::from_secs(7)).await;
    stack(&["start", "mariadb"]);

    let deadline = Instant::now() + Duration::from_secs(90);
    while count(&db).await.unwrap_or(0) < 600 {
        assert!(Instant::now() < deadline, "second half never persisted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    consuming.await.expect("task").expect("clean stop");

    assert_eq!(count(&db).await, Some(600));
    let sold: u32 = sqlx::query_scalar("SELECT sold FROM sales WHERE sale_id = ?")
        .bind(sale_id)
        .fetch_one(&db)
        .await
        .expect("sold");
    assert_eq!(sold, 600);
    assert!(
        metrics.retries.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the outage was felt and retried"
    );
}
