//! MariaDB stops mid-stream and comes back: nothing lost, nothing duplicated.
//!
//! This test stops the shared stack's MariaDB, so `scripts/test.sh` runs it alone, after every
//! other test (it lives in a module named `disruptive`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_persister::consumer::Persister;
use flashgate_persister::metrics::Metrics;
use flashgate_testkit::stack;
use rdkafka::producer::FutureProducer;
use sqlx::MySqlPool;
use tokio::sync::watch;

use crate::helpers::{insert_sale, isolated, produce_orders};

async fn count(db: &MySqlPool) -> Option<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(db)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_stopped_mid_stream_then_started_loses_and_duplicates_nothing() {
    let (settings, db) = isolated().await;
    let sale_id = insert_sale(&db, 100_000).await;
    let metrics = Arc::new(Metrics::default());
    let persister = Persister::new(settings.clone(), db.clone(), metrics.clone())
        .await
        .expect("persister");
    let (stop, stopped) = watch::channel(false);
    let consuming = tokio::spawn(persister.run(stopped));
    let producer: FutureProducer = settings.kafka.producer_config().create().expect("producer");
    let topic = settings.kafka.orders_topic.clone();

    produce_orders(&producer, &topic, sale_id, 0..300).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&db).await.unwrap_or(0) < 300 {
        assert!(Instant::now() < deadline, "first half never persisted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack(&["stop", "mariadb"]);
    produce_orders(&producer, &topic, sale_id, 300..600).await;
    // MariaDB stays down until the persister has met the outage (a batch failed and is being
    // retried), however long the broker takes to hand it the second half.
    let retried = |m: &Metrics| m.retries.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while retried(&metrics) == 0 {
        if Instant::now() > deadline {
            stack(&["start", "mariadb"]);
            panic!("the persister never met the outage");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
}
