//! MySQL/MariaDB settings, and how they become sqlx connection options.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::Secret;
use crate::error::Invalid;

/// The database that is the system of record.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MysqlSettings {
    /// `mysql://user:password@host:port/database`; redacted in logs because it holds the
    /// password. Default: the local stack, `mysql://flashgate:flashgate@127.0.0.1:3307/flashgate`.
    pub url: Secret,
    /// Connections in the pool. Default 16.
    pub max_connections: u32,
    /// How long a caller waits for a free connection, in milliseconds. Default 5000.
    pub acquire_timeout_ms: u64,
}

impl Default for MysqlSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("mysql://flashgate:flashgate@127.0.0.1:3307/flashgate"),
            max_connections: 16,
            acquire_timeout_ms: 5_000,
        }
    }
}

impl MysqlSettings {
    /// Connection options parsed from `url`.
    pub fn connect_options(&self) -> Result<MySqlConnectOptions, sqlx::Error> {
        MySqlConnectOptions::from_str(self.url.expose())
    }

    /// Pool options: size and acquire timeout.
    pub fn pool_options(&self) -> MySqlPoolOptions {
        MySqlPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
    }

    /// Opens the pool and checks that one connection works.
    pub async fn connect(&self) -> Result<MySqlPool, sqlx::Error> {
        self.connect_sized(self.max_connections).await
    }

    /// Opens a pool of `max_connections` instead of the configured size, for a job that knows
    /// how many it needs (one per worker, say), and checks that one connection works.
    pub async fn connect_sized(&self, max_connections: u32) -> Result<MySqlPool, sqlx::Error> {
        self.pool_options()
            .max_connections(max_connections)
            .connect_with(self.connect_options()?)
            .await
    }

    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        let url = self.url.expose();
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            problems.push(Invalid::new(
                "mysql.url",
                "must start with mysql:// or mariadb://",
            ));
        } else if let Err(err) = self.connect_options() {
            // The parser's message never contains the password; the URL itself is not echoed.
            problems.push(Invalid::new("mysql.url", format!("not a MySQL URL: {err}")));
        }
        Invalid::check_positive(
            problems,
            "mysql.max_connections",
            u64::from(self.max_connections),
        );
        Invalid::check_positive(
            problems,
            "mysql.acquire_timeout_ms",
            self.acquire_timeout_ms,
        );
    }
}
