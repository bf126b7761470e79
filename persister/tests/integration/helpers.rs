//! Shared test set-up: a fresh database per test, on the local stack's MariaDB.

use flashgate_testkit::{fresh_database, stack_settings};
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
