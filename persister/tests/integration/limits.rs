//! MySQL checks the per-user limit a second time, under the sale's row lock, as it checks the
//! stock: when Redis lost the buyers' counts (a failover), a shopper's orders beyond the limit
//! are stored `rejected` and announced, never confirmed.

use std::time::Duration;

use flashgate_events::OrderAdmitted;

use crate::persisting::{order, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_beyond_the_per_user_limit_are_rejected_in_mysql_and_announced() {
    let running = start().await;
    let sale_id: u64 = sqlx::query(
        "INSERT INTO sales (sku, title, price, total, per_user_limit, starts_at, ends_at) \
         VALUES ('SKU', 'T', 500, 100, 2, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) + INTERVAL 1 HOUR)",
    )
    .execute(&running.db)
    .await
    .expect("sale")
    .last_insert_id();
    let of = |user: &str, quantity: u32| OrderAdmitted {
        user_id: user.to_owned(),
        ..order(sale_id, 0, quantity)
    };
    // uma's cancelled order gave its 2 units back: it does not count against her.
    let cancelled = of("uma", 2);
    sqlx::query(
        "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, status, \
         admitted_at) VALUES (?, ?, 'uma', 2, 500, 1000, 'cancelled', UTC_TIMESTAMP(3))",
    )
    .bind(&cancelled.order_id)
    .bind(sale_id)
    .execute(&running.db)
    .await
    .expect("cancelled order");

    // As if Redis had lost sam's count: three 1-unit orders and one of 3 units, limit 2. They
    // may arrive in any order (two partitions): whichever 1-unit order comes third is refused,
    // and 3 units never fit. `SAM` is someone else.
    let sams = [of("sam", 1), of("sam", 1), of("sam", 1), of("sam", 3)];
    let others = [of("SAM", 2), of("uma", 2)];
    for o in sams.iter().chain(&others) {
        running.send(o).await;
    }

    let rows = running
        .wait_count(
            &format!("SELECT COUNT(*) FROM orders WHERE sale_id = {sale_id}"),
            7,
        )
        .await;
    let settings = running.settings.clone();
    let topic = settings.kafka.compensations_topic.clone();
    let announced = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &topic,
            2,
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
    })
    .await
    .expect("reader");

    assert_eq!(rows, 7, "refused orders are stored, not dropped");
    let units = |user: &'static str, status: &'static str| {
        let db = running.db.clone();
        async move {
            let units: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(quantity), 0) AS SIGNED) FROM orders \
                 WHERE sale_id = ? AND user_id = ? AND status = ?",
            )
            .bind(sale_id)
            .bind(user)
            .bind(status)
            .fetch_one(&db)
            .await
            .expect("units");
            units
        }
    };
    assert_eq!(units("sam", "confirmed").await, 2, "sam holds his limit");
    assert_eq!(
        units("sam", "rejected").await,
        4,
        "one 1-unit order and the 3-unit one"
    );
    assert_eq!(units("SAM", "confirmed").await, 2, "SAM is not sam");
    assert_eq!(units("uma", "confirmed").await, 2);
    assert_eq!(
        running.sold(sale_id).await,
        6,
        "only confirmed units are sold"
    );
    let reasons: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT reject_reason FROM orders WHERE sale_id = ? AND status = 'rejected'",
    )
    .bind(sale_id)
    .fetch_all(&running.db)
    .await
    .expect("reasons");
    assert_eq!(reasons, vec![Some("per_user_limit".to_owned()); 2]);
    for message in &announced {
        let event: serde_json::Value = serde_json::from_slice(&message.payload).expect("json");
        assert_eq!(event["type"], "order.rejected");
        let reason = event["data"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("per-user limit"), "{reason}");
    }
    let mut keys: Vec<String> = announced.into_iter().map(|m| m.key).collect();
    keys.sort();
    let mut refused: Vec<String> =
        sqlx::query_scalar("SELECT order_id FROM orders WHERE sale_id = ? AND status = 'rejected'")
            .bind(sale_id)
            .fetch_all(&running.db)
            .await
            .expect("refused");
    refused.sort();
    assert_eq!(keys, refused, "each refused order is announced");
    running.stop().await;
}
