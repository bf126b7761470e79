//! Settings of the HTTP gateway and of its JWT verification.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Secret;
use crate::de;
use crate::error::Invalid;

/// The HTTP server in front of Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Address the gateway listens on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Cap on open client connections; further connections wait in the accept queue.
    /// Default 10000.
    pub max_connections: usize,
    /// Largest accepted request body, in bytes; larger gets 413. Default 16384.
    pub body_limit_bytes: usize,
    /// Time allowed for one request, in milliseconds. Default 5000.
    pub request_timeout_ms: u64,
    /// Time allowed for a client to send the request headers, in milliseconds. Default 5000.
    pub header_read_timeout_ms: u64,
    /// On shutdown, how long in-flight requests and the outbox relay may take to finish,
    /// in milliseconds. Default 10000.
    pub shutdown_grace_ms: u64,
    /// A sale's outbox may hold this many entries; past it purchases get 503 `overloaded`
    /// (Kafka is behind or down). Default 100000.
    pub outbox_max_len: u64,
    /// How long an idempotent answer is kept, in seconds. Default 86400 (24 h).
    pub idempotency_ttl_secs: u64,
    /// How long a sale seen sold out is answered from memory, in milliseconds; 0 disables.
    /// Default 1000.
    pub sold_out_cache_ms: u64,
    /// Outbox entries the relay reads and sends per batch. Default 500.
    pub relay_batch_size: u64,
    /// Pending outbox entries idle this long (their gateway died) are claimed and re-sent,
    /// in milliseconds. Default 15000.
    pub relay_claim_idle_ms: u64,
    /// The relay stops watching a sale's or policy's outbox once it is empty and the owner
    /// has been over (by Redis's clock) for this long, in milliseconds. Default 60000.
    pub relay_retire_grace_ms: u64,
    /// How often the relay scans Redis for non-empty outboxes missing from its active set
    /// (and puts them back), in milliseconds. Default 30000.
    pub relay_sweep_interval_ms: u64,
    /// How often the lifecycle sweeper looks for orders past their `pay_by`, compensations
    /// to finish and sales to clean up, in milliseconds. Default 1000 (an order expires within
    /// about this much after its `pay_by`).
    pub lifecycle_sweep_interval_ms: u64,
    /// How many due orders one script call of the sweeper expires at most (Redis runs the call
    /// alone: 100 keep it busy for a few milliseconds). Default 100, 1 to 10000.
    pub lifecycle_expire_batch: u64,
    /// How long after a sale's end, once all its orders are final and persisted, its keys stay
    /// in Redis before the sweeper removes them, in milliseconds. Default 3600000 (1 h).
    pub sale_cleanup_grace_ms: u64,
    /// Most purchases and claims one gateway may have waiting on Redis at once (a counter, no
    /// lock): past it they get 503 `overloaded` at once instead of queueing into timeouts when
    /// Redis slows down. Default 1024, 1 to 1000000.
    pub redis_max_in_flight: u64,
    /// The circuit breaker in front of MySQL on the routes that read it.
    pub breaker: BreakerSettings,
    /// Proxies and load balancers in front of the gateway (addresses or ranges such as
    /// `10.0.0.0/8`): a request from one of them is judged by the client address it adds to
    /// `X-Forwarded-For` / `Forwarded` (the rightmost hop not itself trusted); from anyone
    /// else, by its peer address, whatever it claims. Setting it also turns on the per-address
    /// rate limits by default (`[[rate_limits]]`). Default: empty.
    #[serde(deserialize_with = "de::list")]
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies write the client address into: `x-forwarded-for` or
    /// `forwarded` (RFC 7239); the other is ignored. Default `x-forwarded-for`.
    pub forwarded_header: crate::ForwardedHeader,
    /// How shoppers' and managers' tokens are verified.
    pub jwt: JwtSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 10_000,
            body_limit_bytes: 16 * 1024,
            request_timeout_ms: 5_000,
            header_read_timeout_ms: 5_000,
            shutdown_grace_ms: 10_000,
            outbox_max_len: 100_000,
            idempotency_ttl_secs: 86_400,
            sold_out_cache_ms: 1_000,
            relay_batch_size: 500,
            relay_claim_idle_ms: 15_000,
            relay_retire_grace_ms: 60_000,
            relay_sweep_interval_ms: 30_000,
            lifecycle_sweep_interval_ms: 1_000,
            lifecycle_expire_batch: 100,
            sale_cleanup_grace_ms: 3_600_000,
            redis_max_in_flight: 1_024,
            breaker: BreakerSettings::default(),
            trusted_proxies: Vec::new(),
            forwarded_header: crate::ForwardedHeader::XForwardedFor,
            jwt: JwtSettings::default(),
        }
    }
}

impl GatewaySettings {
    /// Time allowed for one request.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Time allowed to read request headers.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// Grace period for draining on shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        Invalid::check_positive(
            problems,
            "gateway.max_connections",
            self.max_connections as u64,
        );
        if !(64..=1024 * 1024).contains(&self.body_limit_bytes) {
            problems.push(Invalid::new(
                "gateway.body_limit_bytes",
                "must be between 64 and 1048576 bytes",
            ));
        }
        Invalid::check_positive(
            problems,
            "gateway.request_timeout_ms",
            self.request_timeout_ms,
        );
        Invalid::check_positive(
            problems,
            "gateway.header_read_timeout_ms",
            self.header_read_timeout_ms,
        );
        Invalid::check_positive(problems, "gateway.outbox_max_len", self.outbox_max_len);
        Invalid::check_positive(
            problems,
            "gateway.idempotency_ttl_secs",
            self.idempotency_ttl_secs,
        );
        if !(1..=10_000).contains(&self.relay_batch_size) {
            problems.push(Invalid::new(
                "gateway.relay_batch_size",
                "must be between 1 and 10000",
            ));
        }
        Invalid::check_positive(
            problems,
            "gateway.relay_claim_idle_ms",
            self.relay_claim_idle_ms,
        );
        Invalid::check_positive(
            problems,
            "gateway.relay_sweep_interval_ms",
            self.relay_sweep_interval_ms,
        );
        Invalid::check_positive(
            problems,
            "gateway.lifecycle_sweep_interval_ms",
            self.lifecycle_sweep_interval_ms,
        );
        if !(1..=10_000).contains(&self.lifecycle_expire_batch) {
            problems.push(Invalid::new(
                "gateway.lifecycle_expire_batch",
                "must be between 1 and 10000 orders",
            ));
        }
        if !(1..=1_000_000).contains(&self.redis_max_in_flight) {
            problems.push(Invalid::new(
                "gateway.redis_max_in_flight",
                "must be between 1 and 1000000",
            ));
        }
        self.breaker.validate(problems);
        for (i, proxy) in self.trusted_proxies.iter().enumerate() {
            if let Err(message) = proxy.parse::<crate::Cidr>() {
                problems.push(Invalid::new(
                    &format!("gateway.trusted_proxies[{i}]"),
                    message,
                ));
            }
        }
        self.jwt.validate(problems);
    }

    /// The trusted proxies as address ranges (checked at load).
    pub fn trusted_proxy_ranges(&self) -> Vec<crate::Cidr> {
        self.trusted_proxies
            .iter()
            .filter_map(|proxy| proxy.parse().ok())
            .collect()
    }
}

/// The MySQL circuit breaker (`[gateway.breaker]`): after `failures_to_open` failed or timed
/// out MySQL calls in a row, none older than `failure_window_ms`, the routes that read MySQL
/// answer 503 `dependency_unavailable` at once for `open_ms`; then one call probes, and MySQL's
/// answer closes the breaker (a failure opens it again).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Time allowed for one MySQL call of a read route (waiting for a connection included), in
    /// milliseconds; past it the call counts as a failure. Default 2000.
    pub mysql_timeout_ms: u64,
    /// Failed or timed-out calls in a row that open the breaker. Default 5.
    pub failures_to_open: u32,
    /// The failures that open it all fall within this span, in milliseconds: an older failure
    /// starts the count again. Default 10000.
    pub failure_window_ms: u64,
    /// How long the breaker stays open before one call may probe MySQL, in milliseconds
    /// (clients are told to retry after this). Default 5000.
    pub open_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            mysql_timeout_ms: 2_000,
            failures_to_open: 5,
            failure_window_ms: 10_000,
            open_ms: 5_000,
        }
    }
}

impl BreakerSettings {
    /// Time allowed for one MySQL call of a read route.
    pub fn mysql_timeout(&self) -> Duration {
        Duration::from_millis(self.mysql_timeout_ms)
    }

    /// Span the failures that open the breaker fall within.
    pub fn failure_window(&self) -> Duration {
        Duration::from_millis(self.failure_window_ms)
    }

    /// How long the breaker stays open before a probe.
    pub fn open_for(&self) -> Duration {
        Duration::from_millis(self.open_ms)
    }

    fn validate(&self, problems: &mut Vec<Invalid>) {
        Invalid::check_positive(
            problems,
            "gateway.breaker.mysql_timeout_ms",
            self.mysql_timeout_ms,
        );
        if !(1..=1_000).contains(&self.failures_to_open) {
            problems.push(Invalid::new(
                "gateway.breaker.failures_to_open",
                "must be between 1 and 1000",
            ));
        }
        Invalid::check_positive(
            problems,
            "gateway.breaker.failure_window_ms",
            self.failure_window_ms,
        );
        Invalid::check_positive(problems, "gateway.breaker.open_ms", self.open_ms);
    }
}

/// Signature algorithms a deployment may pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// JWT verification (and, for development, signing).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// The only algorithm accepted: `HS256`, `RS256`, `ES256` or `EdDSA`. Default `HS256`.
    pub algorithm: JwtAlgorithm,
    /// Shared secret for `HS256`. No default: the gateway refuses to start without a key.
    pub secret: Option<Secret>,
    /// PEM file with the public key for `RS256`/`ES256`/`EdDSA`. Default: unset.
    pub public_key_pem_file: Option<PathBuf>,
    /// PEM file with the private key, used only by `token` to mint development tokens.
    /// Default: unset.
    pub private_key_pem_file: Option<PathBuf>,
    /// Required `iss` claim, when set. Default: unset (not checked).
    #[serde(deserialize_with = "de::opt_string")]
    pub issuer: Option<String>,
    /// Required `aud` claim, when set. Default: unset (not checked).
    #[serde(deserialize_with = "de::opt_string")]
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 5.
    pub leeway_seconds: u64,
    /// Token revocation (`POST /v1/auth/logout`, `POST /v1/admin/users/{id}/revoke-tokens`):
    /// every gateway keeps the revoked tokens in memory, fed by Redis pub/sub, and answers them
    /// 401 `token_revoked`. While on, a token must carry a `jti` and may not live longer than
    /// `max_token_lifetime_seconds`. Default `true` (secure out of the box).
    pub revocation: bool,
    /// While revocation is on, the longest a token may live (`exp - iat`, or `exp - now` for a
    /// token without `iat`), in seconds: a user's revocation is kept this long, after which
    /// every token it covered has expired. Default 604800 (7 days).
    pub max_token_lifetime_seconds: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::HS256,
            secret: None,
            public_key_pem_file: None,
            private_key_pem_file: None,
            issuer: None,
            audience: None,
            leeway_seconds: 5,
            revocation: true,
            max_token_lifetime_seconds: 7 * 86_400,
        }
    }
}

impl JwtSettings {
    fn validate(&self, problems: &mut Vec<Invalid>) {
        if let Some(secret) = &self.secret
            && self.algorithm == JwtAlgorithm::HS256
            && secret.expose().len() < 32
        {
            problems.push(Invalid::new(
                "gateway.jwt.secret",
                "an HS256 secret needs at least 32 characters",
            ));
        }
        if self.leeway_seconds > 300 {
            problems.push(Invalid::new(
                "gateway.jwt.leeway_seconds",
                "at most 300 seconds",
            ));
        }
        if !(60..=366 * 86_400).contains(&self.max_token_lifetime_seconds) {
            problems.push(Invalid::new(
                "gateway.jwt.max_token_lifetime_seconds",
                "must be between 60 seconds and 366 days",
            ));
        }
    }
}
