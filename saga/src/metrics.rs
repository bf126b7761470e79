//! Counters and gauges of the saga, in the Prometheus text format: payments by outcome,
//! provider calls by result, charge attempts, provider latency, payments in flight, the age of
//! the oldest unfinished payment, and the failures of Redis, MySQL and Kafka apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the provider latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// One of the provider's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    /// `POST /charges`.
    Charge,
    /// `GET /charges?idempotency_key=`.
    Lookup,
    /// `POST /charges/{id}/refund`.
    Refund,
}

impl Call {
    fn as_str(self) -> &'static str {
        match self {
            Call::Charge => "charge",
            Call::Lookup => "lookup",
            Call::Refund => "refund",
        }
    }
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Every metric of the saga.
#[derive(Default)]
pub struct Metrics {
    /// Payments ended, by outcome (completed, failed, given_up, refunded).
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
    /// Provider calls by call and result.
    calls: Mutex<BTreeMap<(Call, &'static str), u64>>,
    /// One lock per call for the latency.
    latency: Mutex<Histogram>,
    /// Charge attempts started (`POST /charges`, each under a key of its own).
    pub attempts: AtomicU64,
    /// Steps that failed for a passing reason and were put off with a backoff.
    pub retries: AtomicU64,
    /// Payments being worked on now by this instance.
    pub in_flight: AtomicU64,
    /// Age of the oldest payment not yet final (any instance), in milliseconds, at the last
    /// look.
    pub oldest_pending_ms: AtomicU64,
    /// Payments not yet final (any instance), at the last look.
    pub unfinished: AtomicU64,
    /// Messages taken from the payments topic.
    pub consumed: AtomicU64,
    /// Payment and refund requests stored (new rows or changes).
    pub requests_stored: AtomicU64,
    /// Requests found stored already (a re-send).
    pub duplicates: AtomicU64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Outcomes announced on the lifecycle topic.
    pub announced: AtomicU64,
    /// Fresh payments the intake leased and handed to this instance's workers (no claim).
    pub handed_off: AtomicU64,
    /// Times the provider answered again after failing, and the payments then made due.
    pub provider_recoveries: AtomicU64,
    /// Payments put off by a failing provider made due at once when it answered again.
    pub retries_pulled_forward: AtomicU64,
    /// Rows another instance (or the intake) changed under this one: it let go.
    pub leases_lost: AtomicU64,
    /// Redis calls that failed.
    pub redis_errors: AtomicU64,
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

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A payment ended as `outcome`.
    pub fn outcome(&self, outcome: &'static str) {
        *lock(&self.outcomes).entry(outcome).or_default() += 1;
    }

    /// A provider call ended with `result`.
    pub fn provider_result(&self, call: Call, result: &'static str) {
        *lock(&self.calls).entry((call, result)).or_default() += 1;
    }

    /// A provider call took `elapsed`.
    pub fn provider_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut histogram = lock(&self.latency);
        histogram.count += 1;
        histogram.sum += seconds;
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// How many payments ended as `outcome` (tests).
    pub fn outcomes(&self, outcome: &str) -> u64 {
        lock(&self.outcomes).get(outcome).copied().unwrap_or(0)
    }

    /// How many `call`s ended with `result` (tests).
    pub fn calls(&self, call: Call, result: &str) -> u64 {
        lock(&self.calls)
            .iter()
            .filter(|((c, r), _)| *c == call && *r == result)
            .map(|(_, n)| n)
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP flashgate_saga_payments_total payments ended, by outcome\n\
             # TYPE flashgate_saga_payments_total counter\n",
        );
        for (outcome, n) in lock(&self.outcomes).iter() {
            let _ = writeln!(
                out,
                "flashgate_saga_payments_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP flashgate_saga_provider_calls_total provider calls, by call and result\n\
             # TYPE flashgate_saga_provider_calls_total counter\n",
        );
        for ((call, result), n) in lock(&self.calls).iter() {
            let _ = writeln!(
                out,
                "flashgate_saga_provider_calls_total{{call=\"{}\",result=\"{result}\"}} {n}",
                call.as_str()
            );
        }
        {
            let histogram = lock(&self.latency);
            out.push_str(
                "# HELP flashgate_saga_provider_call_duration_seconds provider call latency\n\
                 # TYPE flashgate_saga_provider_call_duration_seconds histogram\n",
            );
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    out,
                    "flashgate_saga_provider_call_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
                );
            }
            let _ = write!(
                out,
                "flashgate_saga_provider_call_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
                 flashgate_saga_provider_call_duration_seconds_sum {sum}\n\
                 flashgate_saga_provider_call_duration_seconds_count {count}\n",
                count = histogram.count,
                sum = histogram.sum,
            );
        }
        for (name, kind, help, value) in [
            (
                "flashgate_saga_charge_attempts_total",
                "counter",
                "charge attempts started",
                &self.attempts,
            ),
            (
                "flashgate_saga_retries_total",
                "counter",
                "steps put off with a backoff after a passing failure",
                &self.retries,
            ),
            (
                "flashgate_saga_in_flight",
                "gauge",
                "payments being worked on by this instance",
                &self.in_flight,
            ),
            (
                "flashgate_saga_unfinished_payments",
                "gauge",
                "payments not yet final, all instances, at the last look",
                &self.unfinished,
            ),
            (
                "flashgate_saga_consumed_total",
                "counter",
                "messages taken from the payments topic",
                &self.consumed,
            ),
            (
                "flashgate_saga_requests_stored_total",
                "counter",
                "payment and refund requests stored",
                &self.requests_stored,
            ),
            (
                "flashgate_saga_duplicates_total",
                "counter",
                "requests found stored already",
                &self.duplicates,
            ),
            (
                "flashgate_saga_dead_lettered_total",
                "counter",
                "messages sent to the dead-letter topic",
                &self.dead_lettered,
            ),
            (
                "flashgate_saga_announced_total",
                "counter",
                "payment outcomes announced on the lifecycle topic",
                &self.announced,
            ),
            (
                "flashgate_saga_handed_off_total",
                "counter",
                "fresh payments handed from the intake to the workers without a claim",
                &self.handed_off,
            ),
            (
                "flashgate_saga_provider_recoveries_total",
                "counter",
                "times the provider answered again after a streak of failed calls",
                &self.provider_recoveries,
            ),
            (
                "flashgate_saga_retries_pulled_forward_total",
                "counter",
                "payments put off by a failing provider made due at once when it answered again",
                &self.retries_pulled_forward,
            ),
            (
                "flashgate_saga_leases_lost_total",
                "counter",
                "payments changed under this instance, let go",
                &self.leases_lost,
            ),
            (
                "flashgate_saga_redis_errors_total",
                "counter",
                "Redis calls that failed",
                &self.redis_errors,
            ),
            (
                "flashgate_saga_mysql_errors_total",
                "counter",
                "MySQL statements that failed",
                &self.mysql_errors,
            ),
            (
                "flashgate_saga_kafka_errors_total",
                "counter",
                "Kafka sends that failed",
                &self.kafka_errors,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let oldest = self.oldest_pending_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "# HELP flashgate_saga_oldest_pending_seconds age of the oldest payment not yet final\n\
             # TYPE flashgate_saga_oldest_pending_seconds gauge\n\
             flashgate_saga_oldest_pending_seconds {oldest}"
        );
        out
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_shows_outcomes_calls_and_cumulative_latency_buckets() {
        let metrics = Metrics::default();
        metrics.outcome("completed");
        metrics.outcome("completed");
        metrics.provider_result(Call::Charge, "succeeded");
        metrics.provider_latency(Duration::from_millis(15));
        metrics.provider_latency(Duration::from_millis(3_000));
        metrics.oldest_pending_ms.store(1_500, Ordering::Relaxed);
        let text = metrics.render();
        assert!(text.contains(r#"flashgate_saga_payments_total{outcome="completed"} 2"#));
        assert!(text.contains(
            r#"flashgate_saga_provider_calls_total{call="charge",result="succeeded"} 1"#
        ));
        assert!(
            text.contains(r#"flashgate_saga_provider_call_duration_seconds_bucket{le="0.01"} 0"#)
        );
        assert!(
            text.contains(r#"flashgate_saga_provider_call_duration_seconds_bucket{le="0.02"} 1"#)
        );
        assert!(text.contains(r#"flashgate_saga_provider_call_duration_seconds_bucket{le="5"} 2"#));
        assert!(text.contains("flashgate_saga_provider_call_duration_seconds_count 2"));
        assert!(text.contains("flashgate_saga_oldest_pending_seconds 1.5"));
        assert_eq!(metrics.calls(Call::Charge, "succeeded"), 1);
        assert_eq!(metrics.outcomes("completed"), 2);
    }
}
