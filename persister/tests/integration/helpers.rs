//! Shared test set-up: settings of the local stack, and a fresh database per test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use flashgate_config::{Settings, Sources};
use sqlx::mysql::MySqlPool;

/// The settings the binaries would use here: defaults (the local stack) overridden by
/// `FLASHGATE__...` variables when CI or a developer sets them. Read, never written.
pub fn settings() -> Settings {
    Settings::load(&Sources::from_process(None)).expect("test configuration is valid")
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database created for one test; [`TestDatabase::drop`] removes it.
pub struct TestDatabase {
    pub name: String,
    pub pool: MySqlPool,
    admin: MySqlPool,
}

impl TestDatabase {
    /// Creates an empty database with a unique name and a pool connected to it.
    pub async fn create() -> Self {
        let settings = settings();
        let admin = settings
            .mysql
            .connect()
            .await
            .expect("connect to MySQL of the local stack (is scripts/stack.sh up?)");
        let name = unique("flashgate_test");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&admin)
            .await
            .expect("create test database");
        let options = settings
            .mysql
            .connect_options()
            .expect("valid URL")
            .database(&name);
        let pool = settings
            .mysql
            .pool_options()
            .connect_with(options)
            .await
            .expect("connect to test database");
        Self { name, pool, admin }
    }

    /// Drops the database and closes the pools.
    pub async fn drop(self) {
        self.pool.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE `{}`",
            self.name
        )))
        .execute(&self.admin)
        .await
        .expect("drop test database");
        self.admin.close().await;
    }
}
