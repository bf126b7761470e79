//! The settings tree: one section per part of the system.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::Invalid;
use crate::{
    GatewaySettings, KafkaSettings, MysqlSettings, NotifierSettings, PaymentSettings, PspSettings,
    RedisSettings, SagaSettings,
};

/// Every setting of every flashgate binary. Each binary reads the sections it needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Redis (Sentinel) connection.
    pub redis: RedisSettings,
    /// Kafka brokers, topics, producer and consumer options.
    pub kafka: KafkaSettings,
    /// MySQL/MariaDB, the system of record.
    pub mysql: MysqlSettings,
    /// The HTTP gateway.
    pub gateway: GatewaySettings,
    /// The Kafka → MySQL persister.
    pub persister: PersisterSettings,
    /// Loyalty points: what a purchase earns, how long a use can be cancelled.
    pub points: PointsSettings,
    /// Operator jobs: the reconciliation's workers, page size and checkpoints.
    pub batch: BatchSettings,
    /// Payments: how long an unanswered charge may outlive its order's `pay_by`.
    pub payments: PaymentSettings,
    /// The payment saga (`flashgate-saga`): provider, timeouts, retries, leases.
    pub saga: SagaSettings,
    /// The virtual payment provider (`flashgate-psp`).
    pub psp: PspSettings,
    /// The notifier (`flashgate-notifier`): routes, channels, retries, breakers.
    pub notifier: NotifierSettings,
    /// Every binary's log lines: filter and format.
    pub log: LogSettings,
    /// `[queue]`: the waiting room of queued sales (pass secret and lifetime, idle drop, tick).
    pub queue: crate::QueueSettings,
    /// `[[rate_limits]]`: each entry replaces the built-in limit of its class and key (see
    /// [`crate::default_limit`]); `rate = 0` turns one off. Default: none (the built-in ones).
    pub rate_limits: Vec<crate::RateLimit>,
}

impl Settings {
    /// The rate limits in force: the configured entries over the defaults; per-address
    /// defaults only behind trusted proxies.
    pub fn rate_table(&self) -> crate::RateTable {
        crate::RateTable::resolve(&self.rate_limits, !self.gateway.trusted_proxies.is_empty())
    }

    /// Every problem with the values, each naming its key.
    pub(crate) fn validate(&self) -> Vec<Invalid> {
        let mut problems = Vec::new();
        self.redis.validate(&mut problems);
        self.kafka.validate(&mut problems);
        self.mysql.validate(&mut problems);
        self.gateway.validate(&mut problems);
        self.persister.validate(&mut problems);
        self.points.validate(&mut problems);
        self.batch.validate(&mut problems);
        self.payments.validate(&mut problems);
        self.saga.validate(&mut problems);
        self.psp.validate(&mut problems);
        self.queue.validate(&mut problems);
        crate::limits::validate(&self.rate_limits, &mut problems);
        self.notifier.validate(&mut problems);
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            problems.push(Invalid::new("log.filter", err.to_string()));
        }
        problems
    }
}

/// The persister's batching and its health/metrics listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersisterSettings {
    /// Address of `/healthz`, `/readyz` and `/metrics`. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// Most messages written in one MySQL transaction. Default 500.
    pub batch_size: usize,
    /// Longest wait to fill a batch before writing what has arrived, in milliseconds.
    /// Default 50.
    pub max_wait_ms: u64,
    /// Apply pending migrations when `run` starts. Default true.
    pub migrate_on_start: bool,
    /// How long an admission MySQL's stock or per-user guard refuses waits (parked) for the
    /// units to come back before it is stored `rejected` and announced, in milliseconds. A
    /// relay that died holding a sale's events re-sends them after
    /// `gateway.relay_claim_idle_ms`, behind later ones: the end that gave a unit back can
    /// reach MySQL after the admission that bought it again. 0 rejects at once. Default 45000
    /// (three times the relay's default claim idle).
    pub refused_admission_wait_ms: u64,
}

impl Default for PersisterSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            batch_size: 500,
            max_wait_ms: 50,
            migrate_on_start: true,
            refused_admission_wait_ms: 45_000,
        }
    }
}

impl PersisterSettings {
    /// Longest wait to fill a batch.
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }

    /// How long a refused admission waits for its units (0: not at all).
    pub fn refused_admission_wait(&self) -> Duration {
        Duration::from_millis(self.refused_admission_wait_ms)
    }

    fn validate(&self, problems: &mut Vec<Invalid>) {
        if self.refused_admission_wait_ms > 86_400_000 {
            problems.push(Invalid::new(
                "persister.refused_admission_wait_ms",
                "must be at most 86400000 (a day)",
            ));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            problems.push(Invalid::new(
                "persister.batch_size",
                "must be between 1 and 10000",
            ));
        }
        Invalid::check_positive(problems, "persister.max_wait_ms", self.max_wait_ms);
    }
}

/// Loyalty points: what a purchase earns, and how long uses can be cancelled.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PointsSettings {
    /// Points earned per confirmed order, in basis points of its amount (100 = 1 %, rounded
    /// down); 0 turns earning off. Default 100.
    pub earn_basis_points: u32,
    /// How long the gateway keeps a use in Redis for `.../cancel`, in seconds; older uses are
    /// looked up in MySQL. Default 2592000 (30 days).
    pub use_record_ttl_secs: u64,
    /// How long a user's point cache in Redis outlives its last write once nothing of it is
    /// pending, in seconds; an expired cache is rebuilt from MySQL on the next read. A cache
    /// holding changes not yet persisted never expires (see `lua/points_use.lua`).
    /// Default 86400 (24 h).
    pub cache_ttl_secs: u64,
}

impl Default for PointsSettings {
    fn default() -> Self {
        Self {
            earn_basis_points: 100,
            use_record_ttl_secs: 30 * 86_400,
            cache_ttl_secs: 86_400,
        }
    }
}

impl PointsSettings {
    /// Points an order of `amount` (minor units) earns.
    pub fn earned(&self, amount: u64) -> u64 {
        let points = u128::from(amount) * u128::from(self.earn_basis_points) / 10_000;
        u64::try_from(points).unwrap_or(u64::MAX)
    }

    fn validate(&self, problems: &mut Vec<Invalid>) {
        if self.earn_basis_points > 10_000 {
            problems.push(Invalid::new(
                "points.earn_basis_points",
                "must be between 0 and 10000 (100 %)",
            ));
        }
        Invalid::check_positive(
            problems,
            "points.use_record_ttl_secs",
            self.use_record_ttl_secs,
        );
        Invalid::check_positive(problems, "points.cache_ttl_secs", self.cache_ttl_secs);
    }
}

/// Operator jobs (reconciliation and seeding).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSettings {
    /// Parallel workers; 0 means one per CPU core. Default 0.
    pub workers: usize,
    /// Rows read per keyset page. Default 10000.
    pub page_size: usize,
    /// Folder for checkpoints of resumable runs. Default `.stack/batch`.
    pub checkpoint_dir: PathBuf,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            workers: 0,
            page_size: 10_000,
            checkpoint_dir: PathBuf::from(".stack/batch"),
        }
    }
}

impl BatchSettings {
    /// Workers to run: the configured number, or one per core.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }

    fn validate(&self, problems: &mut Vec<Invalid>) {
        if !(1..=1_000_000).contains(&self.page_size) {
            problems.push(Invalid::new(
                "batch.page_size",
                "must be between 1 and 1000000",
            ));
        }
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `flashgate_gateway=debug,info`; `RUST_LOG`, when
    /// set, wins. Default `info`.
    #[serde(deserialize_with = "crate::de::string")]
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}
