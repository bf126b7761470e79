//! Redis settings, and how they become a fred client configuration.

use std::time::Duration;

use fred::error::{Error, ErrorKind};
use fred::prelude::{Builder, ClientLike, Config, Pool, ReconnectPolicy, ServerConfig};
use serde::Deserialize;

use crate::Secret;
use crate::de;
use crate::error::Invalid;

/// How to reach Redis: through Sentinel (the default) or one URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Sentinel addresses as `host:port`. Default: the local stack's three Sentinels
    /// (`127.0.0.1:26390`, `:26391`, `:26392`). Empty means "use `url`".
    #[serde(deserialize_with = "de::list")]
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under. Default `flashgate`.
    #[serde(deserialize_with = "de::string")]
    pub master_name: String,
    /// A single-node URL (`redis://host:port/db`), used only when `sentinels` is empty.
    /// Default: unset.
    #[serde(deserialize_with = "de::opt_string")]
    pub url: Option<String>,
    /// Password of the Redis nodes (not of the Sentinels). Default: none.
    pub password: Option<Secret>,
    /// Connections in the client pool. Default 8.
    pub pool_size: usize,
    /// Time allowed to open a connection, in milliseconds. Default 2000.
    pub connect_timeout_ms: u64,
    /// Time allowed for one command, in milliseconds. Default 1000.
    pub command_timeout_ms: u64,
    /// First segment of every key flashgate writes (`fg:{s:42}:stock`). Default `fg`.
    #[serde(deserialize_with = "de::string")]
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            sentinels: ["127.0.0.1:26390", "127.0.0.1:26391", "127.0.0.1:26392"]
                .map(str::to_owned)
                .to_vec(),
            master_name: "flashgate".to_owned(),
            url: None,
            password: None,
            pool_size: 8,
            connect_timeout_ms: 2_000,
            command_timeout_ms: 1_000,
            key_prefix: "fg".to_owned(),
        }
    }
}

impl RedisSettings {
    /// Time allowed for one command.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    /// The fred client configuration: Sentinel discovery when sentinels are set, else the URL.
    pub fn client_config(&self) -> Result<Config, Error> {
        let mut config = if self.sentinels.is_empty() {
            Config::from_url(self.url.as_deref().unwrap_or("redis://127.0.0.1:6390"))?
        } else {
            let hosts = self
                .sentinels
                .iter()
                .map(|addr| {
                    split_host_port(addr).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Config,
                            format!("sentinel `{addr}` is not host:port"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Config {
                server: ServerConfig::new_sentinel(hosts, self.master_name.clone()),
                ..Config::default()
            }
        };
        // The first connection fails fast: a wrong address or password is a clear error at
        // start instead of a silent retry loop. Later, a command sent while the client
        // reconnects waits for the connection, at most its timeout; the caller decides then
        // (the gateway answers 503, a relay backs off).
        config.fail_fast = true;
        if let Some(password) = &self.password {
            config.password = Some(password.expose().to_owned());
        }
        Ok(config)
    }

    /// A fred pool builder with timeouts and an unbounded exponential reconnect (100 ms to 5 s),
    /// so the client follows a Sentinel failover by itself.
    pub fn builder(&self) -> Result<Builder, Error> {
        let mut builder = Builder::from_config(self.client_config()?);
        let connect = Duration::from_millis(self.connect_timeout_ms);
        let command = self.command_timeout();
        builder
            .with_connection_config(|c| {
                c.connection_timeout = connect;
                c.internal_command_timeout = command.max(Duration::from_secs(1));
                // A command written to a connection that closed before its reply came is
                // written once more on the next connection. Every state-changing script is
                // safe to run twice with the same arguments (each is guarded by its own order
                // id, coupon id, txid or call id and then answers as its first run did), and
                // the other writes are idempotent (`SADD`, `HSET` of a status, `XACK`), so
                // the second attempt turns a dropped connection into the real answer instead
                // of an `outcome_unknown` for the shopper. A command that fails twice, or
                // times out, is the caller's to judge (`may_have_run` in the gateway).
                c.max_command_attempts = 2;
            })
            .with_performance_config(|p| p.default_command_timeout = command)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
        Ok(builder)
    }

    /// Builds and connects a pool of `pool_size` clients, waiting for the first connection.
    pub async fn connect_pool(&self) -> Result<Pool, Error> {
        let pool = self.builder()?.build_pool(self.pool_size)?;
        pool.init().await?;
        Ok(pool)
    }

    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        for addr in &self.sentinels {
            if split_host_port(addr).is_none() {
                problems.push(Invalid::new(
                    "redis.sentinels",
                    format!("`{addr}` is not host:port"),
                ));
            }
        }
        if self.sentinels.is_empty() && self.url.is_none() {
            problems.push(Invalid::new(
                "redis.url",
                "set either redis.sentinels or redis.url",
            ));
        }
        if self.sentinels.is_empty()
            && let Some(url) = &self.url
            && let Err(err) = Config::from_url(url)
        {
            problems.push(Invalid::new("redis.url", err.details().to_owned()));
        }
        Invalid::check_positive(problems, "redis.pool_size", self.pool_size as u64);
        Invalid::check_positive(
            problems,
            "redis.connect_timeout_ms",
            self.connect_timeout_ms,
        );
        Invalid::check_positive(
            problems,
            "redis.command_timeout_ms",
            self.command_timeout_ms,
        );
        if self.master_name.is_empty() {
            problems.push(Invalid::new("redis.master_name", "must not be empty"));
        }
    }
}

/// Splits `host:port`; `None` when the port is missing or not a number.
fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.trim().rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing_rejects_missing_or_bad_ports() {
        assert_eq!(
            split_host_port("127.0.0.1:26390"),
            Some(("127.0.0.1".to_owned(), 26390))
        );
        assert_eq!(split_host_port("localhost"), None);
        assert_eq!(split_host_port("host:port"), None);
        assert_eq!(split_host_port(":80"), None);
    }
}
