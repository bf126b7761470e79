//! Prometheus metrics in the text exposition format, kept in process with atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flashgate_events::keys::Outbox;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct HttpMetrics {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
}

/// Outbox state of one sale, as the relay last saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxGauge {
    /// Entries waiting in the stream.
    pub length: u64,
    /// Age of the oldest waiting entry, in seconds.
    pub lag_seconds: f64,
}

/// Every metric of the gateway.
#[derive(Default)]
pub struct Metrics {
    // One lock per request for both the count and the latency.
    http: Mutex<HttpMetrics>,
    admissions: Mutex<BTreeMap<&'static str, u64>>,
    claims: Mutex<BTreeMap<&'static str, u64>>,
    sold_out_from_memory: AtomicU64,
    redis_errors: AtomicU64,
    kafka_errors: AtomicU64,
    mysql_errors: AtomicU64,
    relayed: AtomicU64,
    outbox: Mutex<BTreeMap<Outbox, OutboxGauge>>,
    // Dependency checks `/readyz` really made (its answers are cached for about a second).
    readiness_checks: AtomicU64,
    // Outbox bookkeeping of the relay, one counter per event.
    relay_events: Mutex<BTreeMap<&'static str, u64>>,
    // Requests refused by a rate limit (429), by class and key (user or address).
    rate_limited: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    // Order ends and the lifecycle sweeper's work, one counter per event.
    lifecycle_events: Mutex<BTreeMap<&'static str, u64>>,
    // The waiting rooms' admitter: tickets admitted, passes expired, tickets dropped, draws,
    // failed ticks (this gateway's share of the work).
    queue_events: Mutex<BTreeMap<&'static str, u64>>,
    /// Token revocation: entries loaded, tokens refused, subscriber reconnects.
    pub revocation: crate::revocation::counters::RevocationCounters,
}

fn count(outcomes: &Mutex<BTreeMap<&'static str, u64>>, outcome: &'static str) {
    *outcomes
        .lock()
        .expect("metrics lock")
        .entry(outcome)
        .or_default() += 1;
}

/// Which dependency failed: each is counted apart, so an alert can tell which one is down.
#[derive(Debug, Clone, Copy)]
pub enum Dependency {
    /// A script, a read, or the relay's stream commands.
    Redis,
    /// The relay's producer (a full queue, a failed delivery).
    Kafka,
    /// A read or write of the system of record.
    Mysql,
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut http = self.http.lock().expect("metrics lock");
        *http.requests.entry((route, status)).or_default() += 1;
        let histogram = http.latency.entry(route).or_default();
        histogram.count += 1;
        histogram.sum += seconds;
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Counts one admission outcome (`Admission::label`).
    pub fn observe_admission(&self, outcome: &'static str) {
        count(&self.admissions, outcome);
    }

    /// Counts one coupon claim outcome (`Claim::label`).
    pub fn observe_claim(&self, outcome: &'static str) {
        count(&self.claims, outcome);
    }

    /// Counts a sold-out answer given from memory, without Redis.
    pub fn observe_sold_out_from_memory(&self) {
        self.sold_out_from_memory.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one failed call to a dependency.
    pub fn dependency_error(&self, dependency: Dependency) {
        let counter = match dependency {
            Dependency::Redis => &self.redis_errors,
            Dependency::Kafka => &self.kafka_errors,
            Dependency::Mysql => &self.mysql_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts orders the relay delivered to Kafka.
    pub fn relayed(&self, count: u64) {
        self.relayed.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts one round of `/readyz` dependency checks.
    pub fn observe_readiness_check(&self) {
        self.readiness_checks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one relay bookkeeping event: `retired` (an outbox over and empty left the active
    /// set), `rediscovered` (a non-empty outbox found outside it and put back), or
    /// `group_recreated` (its consumer group was lost and made again).
    pub fn observe_relay_event(&self, event: &'static str) {
        count(&self.relay_events, event);
    }

    /// Counts one request refused by the `class` limit per `key` (a 429).
    pub fn observe_rate_limited(&self, class: &'static str, key: &'static str) {
        *self
            .rate_limited
            .lock()
            .expect("metrics lock")
            .entry((class, key))
            .or_default() += 1;
    }

    /// Counts `n` waiting-room events of one kind: `admitted`, `expired` (a pass unused),
    /// `dropped` (a ticket idle too long), `drawn` (a draw this gateway applied) or
    /// `tick_failed`.
    pub fn observe_queue(&self, event: &'static str, n: u64) {
        if n > 0 {
            *self
                .queue_events
                .lock()
                .expect("metrics lock")
                .entry(event)
                .or_default() += n;
        }
    }

    /// Counts one lifecycle event: an order ended (`cancelled`, `expired`, `paid`), a give-back
    /// done or to retry, a sale cleaned up, a sweep that failed.
    pub fn observe_lifecycle(&self, event: &'static str) {
        count(&self.lifecycle_events, event);
    }

    /// Records an outbox's length and lag.
    pub fn set_outbox(&self, outbox: Outbox, gauge: OutboxGauge) {
        self.outbox
            .lock()
            .expect("metrics lock")
            .insert(outbox, gauge);
    }

    /// Drops the gauges of an outbox the relay no longer watches.
    pub fn forget_outbox(&self, outbox: Outbox) {
        self.outbox.lock().expect("metrics lock").remove(&outbox);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# TYPE flashgate_http_requests_total counter\n");
        let http = self.http.lock().expect("metrics lock");
        for ((route, status), count) in &http.requests {
            let _ = writeln!(
                out,
                "flashgate_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# TYPE flashgate_http_request_duration_seconds histogram\n");
        for (route, h) in &http.latency {
            for (bound, count) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "flashgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "flashgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 flashgate_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 flashgate_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        drop(http);
        for (name, outcomes) in [
            ("flashgate_admissions_total", &self.admissions),
            ("flashgate_coupon_claims_total", &self.claims),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter");
            for (outcome, count) in outcomes.lock().expect("metrics lock").iter() {
                let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {count}");
            }
        }
        let _ = writeln!(
            out,
            "# TYPE flashgate_sold_out_from_memory_total counter\n\
             flashgate_sold_out_from_memory_total {}",
            self.sold_out_from_memory.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE flashgate_dependency_errors_total counter\n");
        for (name, counter) in [
            ("redis", &self.redis_errors),
            ("kafka", &self.kafka_errors),
            ("mysql", &self.mysql_errors),
        ] {
            let _ = writeln!(
                out,
                "flashgate_dependency_errors_total{{dependency=\"{name}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# TYPE flashgate_relayed_orders_total counter\nflashgate_relayed_orders_total {}",
            self.relayed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE flashgate_readiness_checks_total counter\nflashgate_readiness_checks_total {}",
            self.readiness_checks.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE flashgate_relay_outbox_events_total counter\n");
        for (event, count) in self.relay_events.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "flashgate_relay_outbox_events_total{{event=\"{event}\"}} {count}"
            );
        }
        out.push_str("# TYPE flashgate_rate_limited_total counter\n");
        for ((class, key), count) in self.rate_limited.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "flashgate_rate_limited_total{{class=\"{class}\",key=\"{key}\"}} {count}"
            );
        }
        out.push_str("# TYPE flashgate_lifecycle_events_total counter\n");
        for (event, count) in self.lifecycle_events.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "flashgate_lifecycle_events_total{{event=\"{event}\"}} {count}"
            );
        }
        out.push_str("# TYPE flashgate_queue_events_total counter\n");
        for (event, count) in self.queue_events.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "flashgate_queue_events_total{{event=\"{event}\"}} {count}"
            );
        }
        self.revocation.render(&mut out);
        out.push_str("# TYPE flashgate_outbox_length gauge\n");
        let outbox = self.outbox.lock().expect("metrics lock");
        for (owner, gauge) in outbox.iter() {
            let _ = writeln!(
                out,
                "flashgate_outbox_length{{{}}} {}",
                owner.label(),
                gauge.length
            );
        }
        out.push_str("# TYPE flashgate_outbox_lag_seconds gauge\n");
        for (owner, gauge) in outbox.iter() {
            let _ = writeln!(
                out,
                "flashgate_outbox_lag_seconds{{{}}} {}",
                owner.label(),
                gauge.lag_seconds
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_includes_counts_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.observe_request("purchase", 202, Duration::from_micros(800));
        metrics.observe_request("purchase", 409, Duration::from_millis(30));
        metrics.observe_admission("limit_exceeded");
        let text = metrics.render();
        assert!(text.contains(r#"flashgate_http_requests_total{route="purchase",status="202"} 1"#));
        assert!(text.contains(
            r#"flashgate_http_request_duration_seconds_bucket{route="purchase",le="0.001"} 1"#
        ));
        assert!(text.contains(
            r#"flashgate_http_request_duration_seconds_bucket{route="purchase",le="0.05"} 2"#
        ));
        assert!(text.contains(r#"flashgate_admissions_total{outcome="limit_exceeded"} 1"#));
    }
}
