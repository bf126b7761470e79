//! The Prometheus text exposition of the counters, and the lag it shows.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Metrics;
use crate::dlq::reason::Reason;

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, counter) in [
            (
                "flashgate_persister_consumed_total",
                "counter",
                "messages taken from Kafka",
                &self.consumed,
            ),
            (
                "flashgate_persister_persisted_total",
                "counter",
                "orders inserted as confirmed",
                &self.persisted,
            ),
            (
                "flashgate_persister_coupons_issued_total",
                "counter",
                "coupons inserted as issued",
                &self.coupons_issued,
            ),
            (
                "flashgate_persister_coupon_changes_total",
                "counter",
                "coupon redemption changes applied",
                &self.coupon_changes,
            ),
            (
                "flashgate_persister_points_written_total",
                "counter",
                "point ledger rows that moved a balance",
                &self.points_written,
            ),
            (
                "flashgate_persister_points_refused_total",
                "counter",
                "point uses and refunds refused by the balance in MySQL",
                &self.points_refused,
            ),
            (
                "flashgate_persister_duplicates_total",
                "counter",
                "messages whose order, coupon or change was already stored",
                &self.duplicates,
            ),
            (
                "flashgate_persister_rejected_total",
                "counter",
                "orders and coupons refused by the database's guards",
                &self.rejected,
            ),
            (
                "flashgate_persister_dead_lettered_total",
                "counter",
                "messages sent to the dead-letter topic",
                &self.dead_lettered,
            ),
            (
                "flashgate_persister_retries_total",
                "counter",
                "batches retried after a transient failure",
                &self.retries,
            ),
            (
                "flashgate_persister_batches_total",
                "counter",
                "batches written",
                &self.batches,
            ),
            (
                "flashgate_persister_batch_messages_total",
                "counter",
                "messages in written batches",
                &self.batch_messages,
            ),
            (
                "flashgate_persister_batch_seconds_total",
                "counter",
                "time spent writing batches",
                &self.batch_micros,
            ),
            (
                "flashgate_persister_consumer_lag",
                "gauge",
                "messages behind the end of the assigned partitions",
                &self.lag,
            ),
            (
                "flashgate_persister_parked_events",
                "gauge",
                "events waiting for the record they change (a coupon, a use of points, an order)",
                &self.parked,
            ),
            (
                "flashgate_persister_parked_oldest_seconds",
                "gauge",
                "how long the oldest parked event has waited",
                &self.parked_oldest_seconds,
            ),
            (
                "flashgate_persister_parked_total",
                "counter",
                "events parked to wait for the record they change",
                &self.parked_total,
            ),
            (
                "flashgate_persister_unparked_total",
                "counter",
                "parked events decided once their record arrived",
                &self.unparked_total,
            ),
            (
                "flashgate_persister_isolated_batches_total",
                "counter",
                "batches the database refused for good, split to find the refused message",
                &self.isolated,
            ),
            (
                "flashgate_persister_refused_by_database_total",
                "counter",
                "messages the database refuses for good, dead-lettered",
                &self.refused_by_database,
            ),
            (
                "flashgate_persister_order_ends_parked_total",
                "counter",
                "orders' ends parked to wait for their admission",
                &self.order_ends_parked,
            ),
            (
                "flashgate_persister_order_ends_unparked_total",
                "counter",
                "parked orders' ends applied once their admission was stored",
                &self.order_ends_unparked,
            ),
            (
                "flashgate_persister_orders_forgotten_total",
                "counter",
                "ended orders' records removed from Redis once MySQL held their end",
                &self.orders_forgotten,
            ),
            (
                "flashgate_persister_admissions_parked_total",
                "counter",
                "admissions a guard of MySQL refused, parked to wait for units to come back",
                &self.admissions_parked,
            ),
            (
                "flashgate_persister_admissions_unparked_total",
                "counter",
                "parked admissions confirmed once units came back",
                &self.admissions_unparked,
            ),
            (
                "flashgate_persister_admissions_rejected_after_wait_total",
                "counter",
                "parked admissions still refused when their wait was over: rejected and announced",
                &self.admissions_rejected_after_wait,
            ),
        ] {
            let mut value = counter.load(Ordering::Relaxed) as f64;
            if name.ends_with("_seconds_total") {
                value /= 1e6;
            }
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let name = "flashgate_persister_lag_seconds";
        let lag = lag_seconds(self.oldest_held_ms.load(Ordering::Relaxed), now_ms());
        let _ = writeln!(
            out,
            "# HELP {name} age of the oldest message the persister holds (or last wrote), 0 when idle\n\
             # TYPE {name} gauge\n{name} {lag}"
        );
        let name = "flashgate_persister_order_ends_total";
        let _ = writeln!(
            out,
            "# HELP {name} orders' ends stored, by end\n# TYPE {name} counter"
        );
        for (end, counter) in [
            ("cancelled", &self.orders_cancelled),
            ("expired", &self.orders_expired),
            ("paid", &self.orders_paid),
        ] {
            let value = counter.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{end=\"{end}\"}} {value}");
        }
        let name = "flashgate_persister_dead_letters_total";
        let _ = writeln!(
            out,
            "# HELP {name} messages sent to the dead-letter topic, by reason (README: what each \
             means and what to do)\n# TYPE {name} counter"
        );
        for reason in Reason::ALL {
            let value = self.dead_letters[reason.index()].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", reason.code());
        }
        out
    }
}

/// How far behind Kafka the persister is, in seconds: the age of the oldest message it holds
/// (Kafka's timestamp, `oldest_ms`) at `now_ms`; 0 when it holds none.
pub fn lag_seconds(oldest_ms: u64, now_ms: u64) -> f64 {
    if oldest_ms == 0 {
        return 0.0;
    }
    now_ms.saturating_sub(oldest_ms) as f64 / 1000.0
}

/// Now, in ms since the Unix epoch (Kafka's timestamps are wall-clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counts;

    #[test]
    fn lag_is_the_age_of_the_oldest_message_held_and_zero_when_idle() {
        assert_eq!(lag_seconds(0, 1_700_000_000_000), 0.0);
        assert_eq!(lag_seconds(1_700_000_000_000, 1_700_000_007_500), 7.5);
        // A producer's clock ahead of ours is no lag, not a wrap-around.
        assert_eq!(lag_seconds(1_700_000_009_000, 1_700_000_007_500), 0.0);

        let metrics = Metrics::default();
        assert!(
            metrics
                .render()
                .contains("\nflashgate_persister_lag_seconds 0\n")
        );
        metrics
            .oldest_held_ms
            .store(now_ms() - 60_000, Ordering::Relaxed);
        let text = metrics.render();
        let lag: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix("flashgate_persister_lag_seconds "))
            .expect("the lag is rendered")
            .parse()
            .expect("a number");
        assert!((60.0..61.0).contains(&lag), "{lag}");
    }

    #[test]
    fn ends_are_rendered_as_one_counter_labelled_by_end() {
        let metrics = Metrics::default();
        metrics.count(&Counts {
            orders_paid: 2,
            orders_cancelled: 1,
            order_ends_parked: 1,
            ..Counts::default()
        });
        let text = metrics.render();
        assert!(text.contains("flashgate_persister_order_ends_total{end=\"paid\"} 2\n"));
        assert!(text.contains("flashgate_persister_order_ends_total{end=\"cancelled\"} 1\n"));
        assert!(text.contains("flashgate_persister_order_ends_total{end=\"expired\"} 0\n"));
        assert!(text.contains("flashgate_persister_order_ends_parked_total 1\n"));
        assert_eq!(
            text.matches("# TYPE flashgate_persister_order_ends_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn dead_letters_are_rendered_by_reason_every_reason_shown_even_at_zero() {
        let metrics = Metrics::default();
        let mut dead_letters = [0; Reason::COUNT];
        dead_letters[Reason::UnknownSale.index()] = 2;
        let mut counts = Counts {
            dead_lettered: 2,
            dead_letters,
            ..Counts::default()
        };
        counts.add(&counts.clone());
        metrics.count(&counts);
        let text = metrics.render();
        assert!(
            text.contains("flashgate_persister_dead_letters_total{reason=\"unknown_sale\"} 4\n")
        );
        assert!(
            text.contains("flashgate_persister_dead_letters_total{reason=\"undecodable\"} 0\n")
        );
        assert_eq!(
            text.matches("flashgate_persister_dead_letters_total{")
                .count(),
            Reason::COUNT
        );
        assert!(text.contains("flashgate_persister_dead_lettered_total 4\n"));
    }
}
