//! The persister as a service: `/healthz`, `/readyz` and `/metrics`, and a stop that fails
//! readiness at once, finishes the batch in hand and commits its offsets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_config::Settings;
use flashgate_persister::consumer::Persister;
use flashgate_persister::metrics::Metrics;
use sqlx::MySqlPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use crate::helpers::{insert_sale, isolated, left_for_the_group, produce_orders};

/// `GET path` on the persister's listener: status and body, or `None` when nothing answers.
async fn get(settings: &Settings, path: &str) -> Option<(u16, String)> {
    let mut conn = tokio::net::TcpStream::connect(settings.persister.listen)
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: persister\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Polls `GET path` until it answers `status` or 30 s passed; returns the last answer.
async fn wait_for_status(settings: &Settings, path: &str, status: u16) -> Option<(u16, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get(settings, path).await;
        if answer.as_ref().is_some_and(|(s, _)| *s == status) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Holds the sale's row locked (as a long transaction elsewhere would): the persister's batch
/// waits on it, in hand, until the returned transaction ends.
async fn lock_sale(db: &MySqlPool, sale_id: u64) -> sqlx::Transaction<'static, sqlx::MySql> {
    let mut tx = db.begin().await.expect("begin");
    sqlx::query("SELECT sale_id FROM sales WHERE sale_id = ? FOR UPDATE")
        .bind(sale_id)
        .execute(&mut *tx)
        .await
        .expect("lock the sale");
    tx
}

/// Waits until the persister's batch is at its lock of the sales rows (MariaDB lists a locking
/// read waiting on a row lock as running, not as `LOCK WAIT`, so the statement is what tells).
async fn wait_for_lock_wait(db: &MySqlPool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND COMMAND = 'Execute' \
             AND INFO LIKE 'SELECT sale_id, total, sold, per_user_limit FROM sales %FOR UPDATE'",
        )
        .fetch_one(db)
        .await
        .expect("lock waits");
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the persister never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn orders(db: &MySqlPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(db)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer_and_readiness_fails_as_soon_as_the_stop_begins() {
    let (mut settings, db) = isolated().await;
    settings.persister.listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let sale_id = insert_sale(&db, 100).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let service = tokio::spawn(flashgate_persister::startup::run_until(
        settings.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let health = wait_for_status(&settings, "/healthz", 200).await;
    assert_eq!(health, Some((200, "ok\n".to_owned())));
    assert_eq!(
        get(&settings, "/readyz").await,
        Some((200, "ready\n".into()))
    );
    let producer = settings.kafka.producer_config().create().expect("producer");
    produce_orders(&producer, &settings.kafka.orders_topic, sale_id, 0..3).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (status, body) = get(&settings, "/metrics").await.expect("metrics");
        assert_eq!(status, 200);
        if body.contains("flashgate_persister_persisted_total 3") || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        metrics.contains("flashgate_persister_persisted_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flashgate_persister_consumed_total 3"),
        "{metrics}"
    );

    // A batch in hand waits on a lock while the stop begins: readiness fails at once, the
    // process keeps serving until the batch is done.
    let lock = lock_sale(&db, sale_id).await;
    produce_orders(&producer, &settings.kafka.orders_topic, sale_id, 3..5).await;
    wait_for_lock_wait(&db).await;
    let _ = stop.send(());
    let stopping = wait_for_status(&settings, "/readyz", 503).await;
    assert_eq!(stopping, Some((503, "not ready\n".to_owned())));
    assert_eq!(get(&settings, "/healthz").await.map(|(s, _)| s), Some(200));
    assert_eq!(
        orders(&db).await,
        3,
        "not ready while the batch is still in hand"
    );
    assert!(!service.is_finished());
    lock.commit().await.expect("release the lock");
    service.await.expect("service task").expect("clean stop");

    assert!(
        get(&settings, "/healthz").await.is_none(),
        "a stopped persister serves nothing"
    );
    // The batch in hand holds one or both of the new orders (two partitions); what it held is
    // written and committed, what came after it waits for the next consumer.
    let written = orders(&db).await;
    let left: i64 = tokio::task::spawn_blocking(move || {
        let group = settings.kafka.consumer_group.clone();
        left_for_the_group(&settings, &group).iter().sum()
    })
    .await
    .expect("reader");
    assert!(written >= 4, "the batch in hand was written: {written}");
    assert_eq!(written, 5 - left, "written is exactly what was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_stop_the_batch_in_hand_is_written_and_its_offsets_committed() {
    let (settings, db) = isolated().await;
    let sale_id = insert_sale(&db, 100).await;
    let persister = Persister::new(settings.clone(), db.clone(), Arc::new(Metrics::default()))
        .await
        .expect("persister");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(persister.run(stopped));
    let lock = lock_sale(&db, sale_id).await;
    let producer = settings.kafka.producer_config().create().expect("producer");
    produce_orders(&producer, &settings.kafka.orders_topic, sale_id, 0..6).await;
    wait_for_lock_wait(&db).await;

    let _ = stop.send(true);
    lock.commit().await.expect("release the lock");
    task.await.expect("persister task").expect("clean stop");

    // The batch in hand holds some of the six (two partitions); what it held is written and
    // committed, so a new consumer of the group starts after it, and nothing else was.
    let written = orders(&db).await;
    let group = settings.kafka.consumer_group.clone();
    let left: i64 =
        tokio::task::spawn_blocking(move || left_for_the_group(&settings, &group).iter().sum())
            .await
            .expect("reader");
    assert!(written >= 1, "the batch in hand was written");
    assert_eq!(
        written,
        6 - left,
        "a new consumer of the group finds exactly the unwritten orders left"
    );
}
