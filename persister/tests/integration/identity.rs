//! Identifiers compare as bytes in MySQL, as in Redis and Rust; and a message the database
//! refuses for good (a constraint, a duplicate key) goes to the dead-letter topic with the
//! server's reason while the rest of its batch, and every later batch, is stored.

use std::collections::HashMap;
use std::time::Duration;

use crate::coupons::{issued, policy, send_issued};
use crate::persisting::{Running, order, prepare, start};

/// The dead-letter topic: (key, headers) of `expected` messages, and any extra within 2 s.
async fn dead_letters(
    running: &Running,
    expected: usize,
) -> Vec<(String, HashMap<String, String>)> {
    let settings = running.settings.clone();
    let topic = settings.kafka.dead_letter_topic.clone();
    tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &topic,
            expected,
            Duration::from_secs(60),
            Duration::from_secs(2),
        )
    })
    .await
    .expect("reader")
    .into_iter()
    .map(|m| (m.key, m.headers))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_differing_only_in_case_both_claim_a_coupon_of_one_policy_and_both_are_persisted()
{
    let running = start().await;
    let policy_id = policy(&running, 5).await; // one coupon per user
    let lower = issued(policy_id, "casey-x");
    let upper = issued(policy_id, "CASEY-x");
    send_issued(&running, &lower).await;
    send_issued(&running, &upper).await;

    let sql = "SELECT COUNT(*) FROM coupons WHERE status = 'issued'";
    assert_eq!(
        running.wait_count(sql, 2).await,
        2,
        "both coupons persisted"
    );
    let mut users: Vec<String> = sqlx::query_scalar("SELECT user_id FROM coupons")
        .fetch_all(&running.db)
        .await
        .expect("users");
    users.sort();
    assert_eq!(users, ["CASEY-x", "casey-x"]);
    // Later events still flow: nothing is stuck behind them.
    let later = issued(policy_id, "dana");
    send_issued(&running, &later).await;
    assert_eq!(running.wait_count(sql, 3).await, 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_database_refuses_is_dead_lettered_and_its_batch_and_later_batches_persist() {
    // A constraint this test adds, that one order breaks: the same error on every retry.
    let mut running = prepare().await;
    sqlx::query("ALTER TABLE orders ADD CONSTRAINT test_no_thirteen CHECK (quantity <> 13)")
        .execute(&running.db)
        .await
        .expect("constraint");
    let sale_id = running.sale(100).await;
    let bad = order(sale_id, 13, 13);
    let batch = [
        order(sale_id, 1, 1),
        order(sale_id, 2, 2),
        bad.clone(),
        order(sale_id, 3, 3),
    ];
    for o in &batch {
        running.send(o).await;
    }
    running.resume().await; // all of them wait: they come as one batch

    let confirmed = "SELECT COUNT(*) FROM orders WHERE status = 'confirmed'";
    assert_eq!(
        running.wait_count(confirmed, 3).await,
        3,
        "the rest of the batch"
    );
    let later = [order(sale_id, 4, 1), order(sale_id, 5, 1)];
    for o in &later {
        running.send(o).await;
    }
    assert_eq!(running.wait_count(confirmed, 5).await, 5, "later batches");

    let dead = dead_letters(&running, 1).await;
    assert_eq!(dead.len(), 1, "only the refused message: {dead:?}");
    assert_eq!(dead[0].0, bad.order_id);
    let reason = &dead[0].1["reason"];
    assert!(reason.contains("the database refuses it"), "{reason}");
    assert!(
        reason.contains("test_no_thirteen"),
        "the server's words: {reason}"
    );
    assert_eq!(running.sold(sale_id).await, 1 + 2 + 3 + 1 + 1);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE order_id = ?")
        .bind(&bad.order_id)
        .fetch_one(&running.db)
        .await
        .expect("count");
    assert_eq!(stored, 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_key_under_a_case_insensitive_column_is_dead_lettered_instead_of_stalling() {
    // The incident of issue 12: a schema that still folds case (here put back on purpose) makes
    // `CASEY-x`'s claim collide with `casey-x`'s. It must cost that one message, not the
    // partition.
    let mut running = prepare().await;
    sqlx::query(
        "ALTER TABLE coupons MODIFY user_id VARCHAR(64) \
         CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL",
    )
    .execute(&running.db)
    .await
    .expect("fold case again");
    let policy_id = policy(&running, 5).await;
    let lower = issued(policy_id, "casey-x");
    let upper = issued(policy_id, "CASEY-x");
    let other = issued(policy_id, "dana");
    // One key: one partition, in this order, one batch.
    for coupon in [&lower, &upper, &other] {
        crate::coupons::send_issued_keyed(&running, coupon, "casey").await;
    }
    running.resume().await;

    let sql = "SELECT COUNT(*) FROM coupons";
    assert_eq!(running.wait_count(sql, 2).await, 2);
    let later = issued(policy_id, "erin");
    send_issued(&running, &later).await;
    assert_eq!(running.wait_count(sql, 3).await, 3, "later batches flow");

    let dead = dead_letters(&running, 1).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1["reason"].contains("1062"), "{:?}", dead[0].1);
    let users: Vec<String> = sqlx::query_scalar("SELECT user_id FROM coupons ORDER BY user_id")
        .fetch_all(&running.db)
        .await
        .expect("users");
    assert_eq!(users, ["casey-x", "dana", "erin"]);
    running.stop().await;
}
