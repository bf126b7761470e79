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
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name",
    )
    .bind(&name)
    .fetch_all(&pool)
    .await
    .expect("list tables");
    for table in ["orders", "sales"] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
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
        .await;
    assert!(oversell.is_err(), "CHECK (sold <= total) must refuse");

    drop_database(pool).await;
}
