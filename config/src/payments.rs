//! Payment settings: the window's grace shared by the gateway and the saga, the saga's own
//! (its provider, timeouts, retries and leases), and the virtual provider's (`flashgate-psp`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::de;
use crate::error::Invalid;

/// What the gateway and the saga agree on about a payment in flight.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// How long after its `pay_by` an order whose charge is still unanswered stays open, in
    /// seconds; then the charge is given up (refunded if it went through) and the order
    /// expires with its compensations. Default 60.
    pub grace_seconds: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self { grace_seconds: 60 }
    }
}

impl PaymentSettings {
    /// The grace as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_seconds)
    }

    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        if self.grace_seconds > 86_400 {
            problems.push(Invalid::new(
                "payments.grace_seconds",
                "must be at most 86400 (a day)",
            ));
        }
    }
}

/// `flashgate-saga`: where the provider is, how long a call may take, how retries back off,
/// and how instances share the work.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SagaSettings {
    /// Address of `/healthz`, `/readyz` and `/metrics`. Default `127.0.0.1:8083`.
    pub listen: SocketAddr,
    /// Base URL of the payment provider. Default `http://127.0.0.1:8090` (`flashgate-psp`).
    #[serde(deserialize_with = "de::string")]
    pub provider_url: String,
    /// Timeout of one provider call (connect, send and answer), in milliseconds. Default 2000.
    pub provider_timeout_ms: u64,
    /// Consumer group reading the payments topic. Default `flashgate-saga`.
    #[serde(deserialize_with = "de::string")]
    pub consumer_group: String,
    /// Payments worked on at once by one instance (provider calls in flight). Default 64.
    pub concurrency: usize,
    /// How long a claimed payment stays this instance's before another may take it over (a
    /// crashed instance's work is resumed after it), in milliseconds. Default 10000.
    pub lease_ms: u64,
    /// How often an idle worker looks for due payments, in milliseconds. Default 100.
    pub poll_interval_ms: u64,
    /// First retry delay after a transient failure, in milliseconds; it doubles per attempt,
    /// with full jitter. Default 200.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds. Default 5000.
    pub retry_cap_ms: u64,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            provider_url: "http://127.0.0.1:8090".to_owned(),
            provider_timeout_ms: 2_000,
            consumer_group: "flashgate-saga".to_owned(),
            concurrency: 64,
            lease_ms: 10_000,
            poll_interval_ms: 100,
            retry_base_ms: 200,
            retry_cap_ms: 5_000,
        }
    }
}

impl SagaSettings {
    /// Timeout of one provider call.
    pub fn provider_timeout(&self) -> Duration {
        Duration::from_millis(self.provider_timeout_ms)
    }

    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        if !(self.provider_url.starts_with("http://") || self.provider_url.starts_with("https://"))
        {
            problems.push(Invalid::new(
                "saga.provider_url",
                "must be an http:// or https:// URL",
            ));
        }
        if self.consumer_group.is_empty() {
            problems.push(Invalid::new("saga.consumer_group", "must not be empty"));
        }
        if !(1..=10_000).contains(&self.concurrency) {
            problems.push(Invalid::new(
                "saga.concurrency",
                "must be between 1 and 10000",
            ));
        }
        Invalid::check_positive(
            problems,
            "saga.provider_timeout_ms",
            self.provider_timeout_ms,
        );
        Invalid::check_positive(problems, "saga.lease_ms", self.lease_ms);
        Invalid::check_positive(problems, "saga.poll_interval_ms", self.poll_interval_ms);
        Invalid::check_positive(problems, "saga.retry_base_ms", self.retry_base_ms);
        if self.retry_cap_ms < self.retry_base_ms {
            problems.push(Invalid::new(
                "saga.retry_cap_ms",
                "must be at least saga.retry_base_ms",
            ));
        }
        if self.lease_ms <= self.provider_timeout_ms {
            problems.push(Invalid::new(
                "saga.lease_ms",
                "must be longer than saga.provider_timeout_ms (a lease must outlive a call)",
            ));
        }
    }
}

/// `flashgate-psp`, the virtual payment provider of the demo, the tests and the benchmarks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PspSettings {
    /// Address it serves on. Default `127.0.0.1:8090`.
    pub listen: SocketAddr,
    /// Latency added to every answer, in milliseconds. Default 20.
    pub latency_ms: u64,
    /// How long `tok_slow` takes to answer, in milliseconds. Default 5000 (longer than the
    /// saga's default timeout).
    pub slow_ms: u64,
    /// Share of charges answered 503 at random before anything is charged, 0.0 to 1.0.
    /// Default 0.
    pub failure_share: f64,
}

impl Default for PspSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            latency_ms: 20,
            slow_ms: 5_000,
            failure_share: 0.0,
        }
    }
}

impl PspSettings {
    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        if !(0.0..=1.0).contains(&self.failure_share) {
            problems.push(Invalid::new(
                "psp.failure_share",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.latency_ms > 60_000 || self.slow_ms > 600_000 {
            problems.push(Invalid::new(
                "psp.latency_ms",
                "latency_ms must be at most 60000 and slow_ms at most 600000",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_shorter_than_a_provider_call_and_a_share_above_one_are_refused() {
        let mut problems = Vec::new();
        SagaSettings {
            lease_ms: 1_000,
            ..SagaSettings::default()
        }
        .validate(&mut problems);
        assert!(problems.iter().any(|p| p.key == "saga.lease_ms"));
        let mut problems = Vec::new();
        PspSettings {
            failure_share: 1.5,
            ..PspSettings::default()
        }
        .validate(&mut problems);
        assert!(problems.iter().any(|p| p.key == "psp.failure_share"));
        let mut problems = Vec::new();
        SagaSettings::default().validate(&mut problems);
        PspSettings::default().validate(&mut problems);
        PaymentSettings::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
