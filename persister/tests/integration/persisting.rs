//! The persister against real Kafka (tansu) and MariaDB: idempotent writes, the stock guard,
//! dead letters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use flashgate_config::Settings;
use flashgate_events::{OrderAdmitted, TRACE_HEADER};
use flashgate_persister::consumer::Persister;
use flashgate_persister::metrics::Metrics;
use flashgate_testkit::{fresh_topic, unique};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::MySqlPool;
use tokio::sync::watch;

/// A persister of this test alone: its own database, topics and consumer group.
pub struct Running {
    pub settings: Settings,
    pub db: MySqlPool,
    /// Its counters (what `/metrics` would show).
    pub metrics: Arc<Metrics>,
    producer: FutureProducer,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts a persister of a test alone.
pub async fn start() -> Running {
    let mut running = prepare().await;
    running.resume().await;
    running
}

/// Everything [`start`] sets up, but no persister consumes yet: messages produced now are
/// waiting, in order, when [`Running::resume`] starts it.
pub async fn prepare() -> Running {
    let (mut settings, db) = crate::helpers::isolated().await;
    settings.kafka.dead_letter_topic = fresh_topic(&settings, "flashgate.test-dlq-", 1).await;
    settings.kafka.compensations_topic = fresh_topic(&settings, "flashgate.test-comp-", 1).await;
    settings.kafka.order_events_topic =
        fresh_topic(&settings, "flashgate.test-order-events-", 1).await;
    settings.persister.max_wait_ms = 20;
    // The guards' own tests see a refusal at once; those of the wait for units set one
    // (reorder.rs).
    settings.persister.refused_admission_wait_ms = 0;
    let producer = settings.kafka.producer_config().create().expect("producer");
    Running {
        settings,
        db,
        metrics: Arc::new(Metrics::default()),
        producer,
        stop: watch::channel(false).0,
        task: None,
    }
}

impl Running {
    /// Starts consuming (see [`prepare`]).
    pub async fn resume(&mut self) {
        let persister =
            Persister::new(self.settings.clone(), self.db.clone(), self.metrics.clone())
                .await
                .expect("persister");
        let (stop, stopped) = watch::channel(false);
        self.stop = stop;
        self.task = Some(tokio::spawn(persister.run(stopped)));
    }

    pub async fn sale(&self, total: u32) -> u64 {
        sqlx::query(
            "INSERT INTO sales (sku, title, price, total, per_user_limit, starts_at, ends_at) \
             VALUES ('SKU', 'T', 500, ?, 10, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) + INTERVAL 1 HOUR)",
        )
        .bind(total)
        .execute(&self.db)
        .await
        .expect("sale")
        .last_insert_id()
    }

    async fn send_raw(&self, key: &str, payload: &[u8]) -> Delivery {
        self.send_to(&self.settings.kafka.orders_topic, key, payload)
            .await
    }

    /// Produces one message to `topic`, waits for the broker, and tells where it landed.
    pub async fn send_to(&self, topic: &str, key: &str, payload: &[u8]) -> Delivery {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload).headers(
                    OwnedHeaders::new().insert(Header {
                        key: TRACE_HEADER,
                        value: Some("trace"),
                    }),
                ),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered")
    }

    pub async fn send(&self, order: &OrderAdmitted) -> Delivery {
        let envelope = order.clone().into_envelope("trace".into());
        self.send_raw(
            &order.order_id,
            &serde_json::to_vec(&envelope).expect("json"),
        )
        .await
    }

    /// Waits until `sql` (a COUNT) reaches `expected`, or 60 s pass; returns the last count.
    pub async fn wait_count(&self, sql: &str, expected: i64) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&self.db)
                .await
                .expect("count");
            if count >= expected || Instant::now() > deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn sold(&self, sale_id: u64) -> u32 {
        sqlx::query_scalar("SELECT sold FROM sales WHERE sale_id = ?")
            .bind(sale_id)
            .fetch_one(&self.db)
            .await
            .expect("sold")
    }

    /// Stops consuming, the batch in hand finished and committed; [`Running::resume`] starts
    /// again where it stopped (messages produced meanwhile wait, in order).
    pub async fn pause(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.await.expect("task").expect("clean stop");
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            task.await.expect("task").expect("clean stop");
        }
    }
}

pub fn order(sale_id: u64, n: u32, quantity: u32) -> OrderAdmitted {
    OrderAdmitted {
        order_id: format!("{sale_id}-{}", unique("o")),
        sale_id,
        user_id: format!("user-{n}"),
        quantity,
        unit_price: 500,
        amount: 500 * u64::from(quantity),
        admitted_at: Utc::now(),
        pay_by: None,
    }
}

/// Every message of `topic`, as (key, headers), read from the start.
pub fn read_topic(
    settings: &Settings,
    topic: &str,
    expected: usize,
) -> Vec<(String, HashMap<String, String>)> {
    flashgate_testkit::read_topic(
        settings,
        topic,
        expected,
        Duration::from_secs(60),
        Duration::ZERO,
    )
    .into_iter()
    .map(|m| (m.key, m.headers))
    .collect()
}

/// Waits until `counter` reaches `expected`, or 60 s pass; returns its value.
pub async fn wait_for(counter: &AtomicU64, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = counter.load(Ordering::Relaxed);
        if value >= expected || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_three_times_makes_one_row_and_moves_sold_once() {
    // Without earning, the duplicates counter counts only orders found stored: an order's
    // earn found again in the ledger (a copy in a later batch) would count too.
    let mut running = prepare().await;
    running.settings.points.earn_basis_points = 0;
    running.resume().await;
    let sale_id = running.sale(10).await;
    let once = order(sale_id, 1, 2);
    for _ in 0..3 {
        running.send(&once).await;
    }
    let other = order(sale_id, 2, 1);
    running.send(&other).await;

    let rows = running.wait_count("SELECT COUNT(*) FROM orders", 2).await;
    // Copies 2 and 3 were seen (and found already stored), not still on their way.
    let duplicates = wait_for(&running.metrics.duplicates, 2).await;

    assert_eq!(rows, 2);
    assert_eq!(duplicates, 2);
    assert_eq!(running.sold(sale_id).await, 3);
    let (status, amount): (String, u64) =
        sqlx::query_as("SELECT status, amount FROM orders WHERE order_id = ?")
            .bind(&once.order_id)
            .fetch_one(&running.db)
            .await
            .expect("row");
    assert_eq!((status.as_str(), amount), ("confirmed", 1000));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_topic_and_the_rest_is_persisted() {
    let running = start().await;
    let sale_id = running.sale(100).await;
    let good = [order(sale_id, 1, 1), order(sale_id, 2, 1)];
    running.send(&good[0]).await;
    let poison = running.send_raw("poison-1", b"{this is not json").await;
    let unknown = running.send(&order(sale_id + 999, 3, 1)).await; // a sale that does not exist
    running.send(&good[1]).await;
    // A marker behind them on every partition: once the markers are stored, every message
    // above has been handled.
    let mut marked = std::collections::HashSet::new();
    let mut markers = 0;
    while marked.len() < 2 && markers < 50 {
        markers += 1;
        marked.insert(
            running
                .send(&order(sale_id, 10 + markers, 1))
                .await
                .partition,
        );
    }
    assert_eq!(marked.len(), 2, "a marker on each partition");

    let rows = running
        .wait_count(
            "SELECT COUNT(*) FROM orders WHERE status = 'confirmed'",
            2 + i64::from(markers),
        )
        .await;
    // Stopping finishes the batch in hand, its dead letters included.
    let (settings, metrics) = (running.settings.clone(), running.metrics.clone());
    running.stop().await;
    let topic = settings.kafka.dead_letter_topic.clone();
    let reader = settings.clone();
    let dead = tokio::task::spawn_blocking(move || read_topic(&reader, &topic, 2))
        .await
        .expect("reader");

    assert_eq!(
        rows,
        2 + i64::from(markers),
        "both good orders and the markers"
    );
    assert_eq!(metrics.dead_lettered.load(Ordering::Relaxed), 2);
    assert_eq!(dead.len(), 2, "{dead:?}");
    let letter = |key: &str| {
        dead.iter()
            .find(|(k, _)| k == key)
            .map(|(_, headers)| headers)
            .unwrap_or_else(|| panic!("{key} dead-lettered: {dead:?}"))
    };
    let source = |at: &Delivery| (at.partition.to_string(), at.offset.to_string());
    let poisoned = letter("poison-1");
    assert!(
        poisoned["reason"].starts_with("undecodable"),
        "{poisoned:?}"
    );
    assert_eq!(poisoned["source_topic"], settings.kafka.orders_topic);
    assert_eq!(
        (
            poisoned["source_partition"].clone(),
            poisoned["source_offset"].clone()
        ),
        source(&poison)
    );
    let unknown_key = dead
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| *k != "poison-1")
        .expect("a second letter")
        .to_owned();
    let orphan = letter(&unknown_key);
    assert!(orphan["reason"].contains("does not exist"), "{orphan:?}");
    assert_eq!(
        (
            orphan["source_partition"].clone(),
            orphan["source_offset"].clone()
        ),
        source(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversold_order_is_stored_rejected_and_announced_and_sold_never_passes_total() {
    let running = start().await;
    let sale_id = running.sale(3).await;
    // 2 + 2 + 1 > 3: Redis must have lost writes. The orders may arrive in any order (two
    // partitions), so whichever comes when the stock is short is the one refused.
    let orders = [
        order(sale_id, 1, 2),
        order(sale_id, 2, 2),
        order(sale_id, 3, 1),
    ];
    for o in &orders {
        running.send(o).await;
    }

    let rows = running.wait_count("SELECT COUNT(*) FROM orders", 3).await;
    let settings = running.settings.clone();
    let topic = settings.kafka.compensations_topic.clone();
    let compensations = tokio::task::spawn_blocking(move || read_topic(&settings, &topic, 1))
        .await
        .expect("reader");

    assert_eq!(rows, 3, "the refused order is stored, not dropped");
    assert_eq!(running.sold(sale_id).await, 3, "sold never passes total");
    let rejected: Vec<(String, u32)> =
        sqlx::query_as("SELECT order_id, quantity FROM orders WHERE status = 'rejected'")
            .fetch_all(&running.db)
            .await
            .expect("rows");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].1, 2, "only a 2-unit order can be short");
    assert_eq!(compensations.len(), 1);
    assert_eq!(
        compensations[0].0, rejected[0].0,
        "the refused order is announced"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_transaction_sees_what_others_committed_after_its_first_read() {
    // Every decision is made under a row lock and must see what the lock's previous holder
    // wrote; a snapshot from the batch's first read (REPEATABLE READ) would not.
    let (_, db) = crate::helpers::isolated().await;
    let sale_id = crate::helpers::insert_sale(&db, 5).await;
    let sold = "SELECT sold FROM sales WHERE sale_id = ?";
    let mut tx = flashgate_persister::batch::begin(&db).await.expect("begin");
    let before: u32 = sqlx::query_scalar(sold)
        .bind(sale_id)
        .fetch_one(&mut *tx)
        .await
        .expect("read");
    sqlx::query("UPDATE sales SET sold = 4 WHERE sale_id = ?")
        .bind(sale_id)
        .execute(&db)
        .await
        .expect("another transaction commits");
    let after: u32 = sqlx::query_scalar(sold)
        .bind(sale_id)
        .fetch_one(&mut *tx)
        .await
        .expect("read again");
    tx.commit().await.expect("commit");
    assert_eq!((before, after), (0, 4));
}
