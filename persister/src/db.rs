//! The database schema (embedded migrations) and its application.

use anyhow::Context;
use sqlx::MySqlPool;
use sqlx::migrate::Migrator;

/// Every migration in `persister/migrations`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Applies the pending migrations; applied ones are checked against their checksums.
pub async fn migrate(pool: &MySqlPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}
