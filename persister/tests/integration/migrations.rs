//! The embedded migrations build the schema in a fresh database, and applying them again is
//! harmless.

use flashgate_persister::db;

use flashgate_testkit::drop_database;

use crate::helpers::test_database;

#[tokio::test]
async fn migrations_create_the_schema_in_a_fresh_database_and_rerun_harmlessly() {
    // Arrange
    let (name, pool) = test_database().await;

    // Act
    db::migrate(&pool).await.expect("first run");
    db::migrate(&pool).await.expect("second run is a no-op");

    // Assert
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
    )
    .bind(&name)
    .fetch_all(&pool)
    .await
    .expect("list tables");
    tables.sort();
    assert_eq!(
        tables,
        [
            "_sqlx_migrations",
            "coupon_policies",
            "coupons",
            "dlq_replays",
            "notification_deliveries",
            "order_history",
            "orders",
            "parked_events",
            "payments",
            "point_balances",
            "point_ledger",
            "sale_queues",
            "sales",
            "user_contacts",
        ]
    );
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .expect("count migrations");
    assert_eq!(applied, db::MIGRATOR.iter().count() as i64);

    // The database refuses to oversell even when asked directly.
    sqlx::query(
        "INSERT INTO sales (sku, title, price, total, sold, per_user_limit, starts_at, ends_at) \
         VALUES ('SKU-1', 'Test', 100, 5, 5, 1, NOW(3), NOW(3) + INTERVAL 1 HOUR)",
    )
    .execute(&pool)
    .await
    .expect("insert a sold-out sale");
    let oversell = sqlx::query("UPDATE sales SET sold = sold + 1 WHERE sku = 'SKU-1'")
        .execute(&pool)
        .await
        .expect_err("CHECK (sold <= total) must refuse");
    // MariaDB's ER_CONSTRAINT_FAILED (4025) names the constraint: this CHECK, no other error.
    let refusal = oversell.as_database_error().expect("a database error");
    assert_eq!(
        refusal
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|e| e.number()),
        Some(4025),
        "{refusal}"
    );
    assert!(
        refusal.message().contains("`sales_sold_within_total`"),
        "{refusal}"
    );

    drop_database(pool).await;
}

#[tokio::test]
async fn binary_identifiers_migrate_existing_rows_and_then_tell_apart_ids_differing_in_case() {
    // Arrange: the schema before 0004, with rows in it (and its case-folding collation).
    let (_, pool) = test_database().await;
    db::MIGRATOR.run_to(3, &pool).await.expect("0001..0003");
    sqlx::query(
        "INSERT INTO sales (sku, title, price, total, sold, per_user_limit, starts_at, ends_at) \
         VALUES ('SKU-1', 'Test', 100, 5, 1, 1, NOW(3), NOW(3) + INTERVAL 1 HOUR)",
    )
    .execute(&pool)
    .await
    .expect("sale");
    sqlx::query(
        "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, status, \
         admitted_at) VALUES ('1-a', 1, 'alice', 1, 100, 100, 'rejected', NOW(3))",
    )
    .execute(&pool)
    .await
    .expect("order");
    sqlx::query("INSERT INTO point_balances (user_id, balance) VALUES ('alice', 7)")
        .execute(&pool)
        .await
        .expect("balance");
    let folded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM point_balances WHERE user_id = 'ALICE'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(folded, 1, "before 0004 the stack's collation folds case");

    // Act
    db::migrate(&pool).await.expect("0004 on existing data");

    // Assert: the rows are kept as they were, and `Alice` is now somebody else.
    let order: (String, String, Option<String>) =
        sqlx::query_as("SELECT user_id, status, reject_reason FROM orders WHERE order_id = '1-a'")
            .fetch_one(&pool)
            .await
            .expect("order kept");
    assert_eq!(order, ("alice".into(), "rejected".into(), None));
    let folded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM point_balances WHERE user_id = 'ALICE'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(folded, 0);
    sqlx::query("INSERT INTO point_balances (user_id, balance) VALUES ('Alice', 3)")
        .execute(&pool)
        .await
        .expect("Alice is not alice");
    for (table, column) in [
        ("orders", "order_id"),
        ("orders", "user_id"),
        ("orders", "trace_id"),
        ("point_ledger", "txid"),
        ("point_ledger", "user_id"),
        ("point_ledger", "reference"),
        ("point_balances", "user_id"),
        ("coupons", "coupon_id"),
        ("coupons", "user_id"),
        ("coupons", "order_id"),
        ("parked_events", "waits_for"),
        ("parked_events", "event_key"),
    ] {
        let collation: String = sqlx::query_scalar(
            "SELECT collation_name FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&pool)
        .await
        .expect("column");
        assert_eq!(collation, "utf8mb4_bin", "{table}.{column}");
    }
    drop_database(pool).await;
}
