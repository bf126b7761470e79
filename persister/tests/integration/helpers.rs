//! Shared test set-up: a fresh database per test, on the local stack's MariaDB.

use flashgate_testkit::{fresh_database, stack_settings};
use rdkafka::consumer::Consumer;
use sqlx::MySqlPool;

/// A fresh, empty database of this test alone, with its name.
pub async fn test_database() -> (String, MySqlPool) {
    let mut settings = stack_settings();
    let pool = fresh_database(&mut settings).await;
    let name = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&pool)
        .await
        .expect("current database");
    (name, pool)
}

/// Inserts an open sale with `total` units at price 100 and returns its id.
pub async fn insert_sale(db: &MySqlPool, total: u32) -> u64 {
    sqlx::query(
        "INSERT INTO sales (sku, title, price, total, per_user_limit, starts_at, ends_at) \
         VALUES ('SKU', 'T', 100, ?, 1, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) + INTERVAL 1 HOUR)",
    )
    .bind(total)
    .execute(db)
    .await
    .expect("insert sale")
    .last_insert_id()
}

/// Produces one 1-unit order per number in `range` (order id `<sale>-<n>`) and waits until
/// the broker acknowledged all of them.
pub async fn produce_orders(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    sale_id: u64,
    range: std::ops::Range<u32>,
) {
    let mut deliveries = Vec::new();
    for n in range {
        let order = flashgate_events::OrderAdmitted {
            order_id: format!("{sale_id}-{n:08}"),
            sale_id,
            user_id: format!("u{n}"),
            quantity: 1,
            unit_price: 100,
            amount: 100,
            admitted_at: chrono::Utc::now(),
            pay_by: None,
        };
        let payload = serde_json::to_vec(&order.clone().into_envelope("t".into())).expect("json");
        let record = rdkafka::producer::FutureRecord::to(topic)
            .key(&order.order_id)
            .payload(&payload);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(err, _)| err)
                .expect("queued"),
        );
    }
    for delivery in deliveries {
        delivery.await.expect("delivery").expect("acknowledged");
    }
}

/// Settings of this test alone: a fresh, migrated database, its own orders, coupons and points
/// topics (2 partitions each), Redis key prefix and consumer group; and a pool on that
/// database.
pub async fn isolated() -> (flashgate_config::Settings, MySqlPool) {
    let mut settings = stack_settings();
    let db = fresh_database(&mut settings).await;
    flashgate_persister::db::migrate(&db)
        .await
        .expect("migrate");
    settings.kafka.orders_topic =
        flashgate_testkit::fresh_topic(&settings, "flashgate.test-orders-", 2).await;
    settings.kafka.coupons_topic =
        flashgate_testkit::fresh_topic(&settings, "flashgate.test-coupons-", 2).await;
    settings.kafka.points_topic =
        flashgate_testkit::fresh_topic(&settings, "flashgate.test-points-", 2).await;
    settings.redis.key_prefix = flashgate_testkit::unique("fgp");
    settings.kafka.consumer_group = flashgate_testkit::unique("flashgate-test-persister-");
    (settings, db)
}

/// What a new consumer of `group` would still get from the orders topic: per partition, the
/// end of the topic (of two partitions) minus the group's committed offset. Blocking.
pub fn left_for_the_group(settings: &flashgate_config::Settings, group: &str) -> Vec<i64> {
    let consumer: rdkafka::consumer::BaseConsumer = settings
        .kafka
        .consumer_config(group)
        .create()
        .expect("consumer");
    let topic = &settings.kafka.orders_topic;
    let mut partitions = rdkafka::TopicPartitionList::new();
    for partition in 0..2 {
        partitions.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(partitions, std::time::Duration::from_secs(10))
        .expect("committed offsets");
    (0..2)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, std::time::Duration::from_secs(10))
                .expect("watermarks");
            let done = match committed
                .find_partition(topic, partition)
                .map(|p| p.offset())
            {
                Some(rdkafka::Offset::Offset(offset)) => offset,
                _ => 0,
            };
            high - done
        })
        .collect()
}
