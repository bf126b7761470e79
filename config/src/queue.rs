//! `[queue]`: the waiting room of sales created with a `queue` (see the gateway's `queue/`):
//! how passes are signed and how long they last, when an idle ticket is dropped, how often
//! every gateway runs the admitter.

use serde::Deserialize;

use crate::Secret;
use crate::error::Invalid;

/// The waiting room's settings, shared by every gateway (they must agree on the pass secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// HMAC-SHA256 key that signs and verifies the `Queue-Pass` of admitted tickets; every
    /// gateway needs the same. Default: unset, then derived from `gateway.jwt.secret` (HS256)
    /// with a fixed label; with neither, queued sales cannot be created (the gateway still
    /// starts and serves everything else).
    pub pass_secret: Option<Secret>,
    /// How long a pass admits its holder to buy, in seconds; unused by then, it expires and its
    /// slot goes to the next position. Default 120.
    pub pass_ttl_seconds: u64,
    /// A waiting ticket whose owner has not polled for this long is dropped (it no longer holds
    /// a place), in seconds. Default 60.
    pub idle_seconds: u64,
    /// How often each gateway runs the admitter (one idempotent script per queued sale), in
    /// milliseconds. Default 250.
    pub tick_ms: u64,
    /// The `poll_after_ms` told to waiting shoppers: how long to wait before polling again.
    /// Default 1000.
    pub poll_after_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            pass_secret: None,
            pass_ttl_seconds: 120,
            idle_seconds: 60,
            tick_ms: 250,
            poll_after_ms: 1_000,
        }
    }
}

impl QueueSettings {
    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        if let Some(secret) = &self.pass_secret
            && secret.expose().len() < 32
        {
            problems.push(Invalid::new(
                "queue.pass_secret",
                "must be at least 32 characters",
            ));
        }
        Invalid::check_positive(problems, "queue.pass_ttl_seconds", self.pass_ttl_seconds);
        Invalid::check_positive(problems, "queue.idle_seconds", self.idle_seconds);
        if !(10..=60_000).contains(&self.tick_ms) {
            problems.push(Invalid::new(
                "queue.tick_ms",
                "must be between 10 and 60000",
            ));
        }
        if !(50..=60_000).contains(&self.poll_after_ms) {
            problems.push(Invalid::new(
                "queue.poll_after_ms",
                "must be between 50 and 60000",
            ));
        }
    }
}
