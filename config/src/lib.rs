//! Typed settings for every flashgate binary.
//!
//! Layers, later wins: built-in defaults (pointing at the local stack of `scripts/stack.sh`),
//! then a TOML file (`--config PATH` or `FLASHGATE_CONFIG`), then environment variables
//! `FLASHGATE__SECTION__KEY`. Every value is checked at load; an error names the key.

pub mod cli;
pub mod consume;
mod de;
mod error;
mod gateway;
mod kafka;
mod limits;
mod load;
mod mysql;
mod notifier;
mod payments;
pub mod process;
mod proxies;
mod queue;
mod redis;
mod secret;
mod settings;
mod shutdown;
pub mod telemetry;

pub use error::{ConfigError, Invalid};
pub use gateway::{BreakerSettings, GatewaySettings, JwtAlgorithm, JwtSettings};
pub use kafka::KafkaSettings;
pub use limits::{Limit, RateClass, RateKey, RateLimit, RateTable, default_limit};
pub use load::{CONFIG_FILE_VAR, ENV_PREFIX, Sources};
pub use mysql::MysqlSettings;
pub use notifier::{
    Channel, EmailSettings, NotifierSettings, SlackSettings, SmtpTls, WebhookSettings,
};
pub use payments::{PaymentSettings, PspSettings, SagaSettings};
pub use proxies::{Cidr, ForwardedHeader};
pub use queue::QueueSettings;
pub use redis::RedisSettings;
pub use secret::Secret;
pub use settings::{
    BatchSettings, LogFormat, LogSettings, PersisterSettings, PointsSettings, Settings,
};
pub use shutdown::shutdown_signal;

#[cfg(test)]
mod tests;
