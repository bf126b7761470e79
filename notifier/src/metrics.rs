//! The notifier's metrics in the Prometheus text format: deliveries by channel and outcome,
//! the latency of the attempts that went out, each endpoint's breaker state and deliveries in
//! hand, the backlog waiting in MySQL, and the failures of MySQL and Kafka apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// An endpoint, as labelled: its channel and name (`email` has one, `smtp`).
pub type EndpointLabel = (String, String);

/// Every metric of the notifier.
#[derive(Default)]
pub struct Metrics {
    /// Deliveries by channel and outcome: `sent`, `retried` (an attempt failed, another is
    /// due), `dead` (dead-lettered), `skipped_no_address` (email to a user without one),
    /// `duplicate` (a redelivered event found its row).
    deliveries: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Duration of the attempts that went out, by channel.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Breaker state by endpoint: 0 closed, 1 open, 2 half-open.
    breakers: Mutex<BTreeMap<EndpointLabel, u8>>,
    /// Deliveries held in memory by endpoint (sending or waiting for their retry).
    in_hand: Mutex<BTreeMap<EndpointLabel, u64>>,
    /// Messages consumed.
    pub consumed: AtomicU64,
    /// Messages that are no event (skipped; the producer's consumers dead-letter them).
    pub undecodable: AtomicU64,
    /// Dead deliveries revived by a dead-letter replay.
    pub revived: AtomicU64,
    /// Deliveries not yet final in MySQL (every instance), at the last look.
    pub pending: AtomicU64,
    /// Age of the oldest of them, in seconds, at the last look.
    pub oldest_pending_secs: AtomicU64,
    /// MySQL statements that failed.
    pub mysql_errors: AtomicU64,
    /// Kafka sends that failed.
    pub kafka_errors: AtomicU64,
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a delivery of `channel` ending (or passing) `outcome`.
    pub fn delivery(&self, channel: &str, outcome: &'static str) {
        *lock(&self.deliveries)
            .entry((channel.to_owned(), outcome))
            .or_default() += 1;
    }

    /// Deliveries of `channel` counted as `outcome` so far.
    pub fn deliveries(&self, channel: &str, outcome: &str) -> u64 {
        lock(&self.deliveries)
            .iter()
            .filter(|((c, o), _)| c == channel && *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// Times an attempt of `channel` that went out.
    pub fn latency(&self, channel: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut all = lock(&self.latency);
        let histogram = all.entry(channel.to_owned()).or_default();
        histogram.count += 1;
        histogram.sum += seconds;
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Sets an endpoint's breaker gauge.
    pub fn breaker(&self, endpoint: &EndpointLabel, state: u8) {
        lock(&self.breakers).insert(endpoint.clone(), state);
    }

    /// Sets an endpoint's in-hand gauge.
    pub fn in_hand(&self, endpoint: &EndpointLabel, count: u64) {
        lock(&self.in_hand).insert(endpoint.clone(), count);
    }

    /// The breaker gauge of an endpoint (0 when never set).
    pub fn breaker_state(&self, endpoint: &EndpointLabel) -> u8 {
        lock(&self.breakers).get(endpoint).copied().unwrap_or(0)
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP flashgate_notifier_deliveries_total Deliveries by channel and outcome.\n\
             # TYPE flashgate_notifier_deliveries_total counter\n",
        );
        for ((channel, outcome), n) in lock(&self.deliveries).iter() {
            let _ = writeln!(
                out,
                "flashgate_notifier_deliveries_total{{channel=\"{channel}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP flashgate_notifier_delivery_duration_seconds Attempts that went out, by channel.\n\
             # TYPE flashgate_notifier_delivery_duration_seconds histogram\n",
        );
        for (channel, histogram) in lock(&self.latency).iter() {
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    out,
                    "flashgate_notifier_delivery_duration_seconds_bucket{{channel=\"{channel}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = write!(
                out,
                "flashgate_notifier_delivery_duration_seconds_bucket{{channel=\"{channel}\",le=\"+Inf\"}} {count}\n\
                 flashgate_notifier_delivery_duration_seconds_sum{{channel=\"{channel}\"}} {sum}\n\
                 flashgate_notifier_delivery_duration_seconds_count{{channel=\"{channel}\"}} {count}\n",
                count = histogram.count,
                sum = histogram.sum,
            );
        }
        out.push_str(
            "# HELP flashgate_notifier_breaker_state Circuit breaker by endpoint: 0 closed, 1 open, 2 half-open.\n\
             # TYPE flashgate_notifier_breaker_state gauge\n",
        );
        for ((channel, endpoint), state) in lock(&self.breakers).iter() {
            let _ = writeln!(
                out,
                "flashgate_notifier_breaker_state{{channel=\"{channel}\",endpoint=\"{endpoint}\"}} {state}"
            );
        }
        out.push_str(
            "# HELP flashgate_notifier_in_hand Deliveries held in memory by endpoint.\n\
             # TYPE flashgate_notifier_in_hand gauge\n",
        );
        for ((channel, endpoint), n) in lock(&self.in_hand).iter() {
            let _ = writeln!(
                out,
                "flashgate_notifier_in_hand{{channel=\"{channel}\",endpoint=\"{endpoint}\"}} {n}"
            );
        }
        for (name, help, kind, value) in [
            (
                "consumed_total",
                "Messages consumed.",
                "counter",
                &self.consumed,
            ),
            (
                "undecodable_total",
                "Messages that are no event (skipped).",
                "counter",
                &self.undecodable,
            ),
            (
                "revived_total",
                "Dead deliveries revived by a dead-letter replay.",
                "counter",
                &self.revived,
            ),
            (
                "backlog",
                "Deliveries not yet final in MySQL, at the last look.",
                "gauge",
                &self.pending,
            ),
            (
                "backlog_oldest_seconds",
                "Age of the oldest delivery not yet final.",
                "gauge",
                &self.oldest_pending_secs,
            ),
            (
                "mysql_errors_total",
                "MySQL statements that failed.",
                "counter",
                &self.mysql_errors,
            ),
            (
                "kafka_errors_total",
                "Kafka sends that failed.",
                "counter",
                &self.kafka_errors,
            ),
        ] {
            let _ = write!(
                out,
                "# HELP flashgate_notifier_{name} {help}\n# TYPE flashgate_notifier_{name} {kind}\n\
                 flashgate_notifier_{name} {}\n",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_shows_deliveries_by_channel_and_outcome_and_the_breakers() {
        let metrics = Metrics::default();
        metrics.delivery("webhook", "sent");
        metrics.delivery("webhook", "sent");
        metrics.delivery("email", "skipped_no_address");
        metrics.latency("webhook", Duration::from_millis(20));
        metrics.breaker(&("webhook".into(), "shop".into()), 1);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"flashgate_notifier_deliveries_total{channel="webhook",outcome="sent"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"flashgate_notifier_deliveries_total{channel="email",outcome="skipped_no_address"} 1"#
        ));
        assert!(text.contains(
            r#"flashgate_notifier_delivery_duration_seconds_bucket{channel="webhook",le="0.025"} 1"#
        ));
        assert!(text.contains(
            r#"flashgate_notifier_delivery_duration_seconds_bucket{channel="webhook",le="0.01"} 0"#
        ));
        assert!(
            text.contains(
                r#"flashgate_notifier_breaker_state{channel="webhook",endpoint="shop"} 1"#
            )
        );
        assert_eq!(metrics.deliveries("webhook", "sent"), 2);
    }
}
