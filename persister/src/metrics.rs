//! Counters of the persister, in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dlq::reason::{ByReason, Reason};

/// Every counter of the persister.
#[derive(Default)]
pub struct Metrics {
    /// Messages taken from Kafka.
    pub consumed: AtomicU64,
    /// Orders inserted as confirmed.
    pub persisted: AtomicU64,
    /// Coupons inserted as issued.
    pub coupons_issued: AtomicU64,
    /// Coupon redemption changes applied.
    pub coupon_changes: AtomicU64,
    /// Ledger rows that moved a balance (earned, used, refunded).
    pub points_written: AtomicU64,
    /// Point uses and refunds refused by the balance in MySQL.
    pub points_refused: AtomicU64,
    /// Messages whose order, coupon or change was already stored.
    pub duplicates: AtomicU64,
    /// Orders and coupons stored as rejected by the database's guards.
    pub rejected: AtomicU64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// The same, by reason ([`Reason::index`]).
    pub dead_letters: [AtomicU64; Reason::COUNT],
    /// Batches retried after a transient failure.
    pub retries: AtomicU64,
    /// Batches written.
    pub batches: AtomicU64,
    /// Sum of batch sizes (for the mean).
    pub batch_messages: AtomicU64,
    /// Sum of batch write times, in microseconds.
    pub batch_micros: AtomicU64,
    /// Messages behind the end of the assigned partitions at the last look.
    pub lag: AtomicU64,
    /// Kafka time (ms since the Unix epoch) of the oldest message of the batch in hand, or of
    /// the last one written; 0 once no message came for a tick. `/metrics` shows its age as
    /// `flashgate_persister_lag_seconds`, which keeps growing while a batch is stuck.
    pub oldest_held_ms: AtomicU64,
    /// Events waiting in `parked_events` for the record they change, at the last look.
    pub parked: AtomicU64,
    /// How long the oldest of them has waited, in seconds, at the last look.
    pub parked_oldest_seconds: AtomicU64,
    /// Events parked to wait for the record they change.
    pub parked_total: AtomicU64,
    /// Parked events decided once their record arrived.
    pub unparked_total: AtomicU64,
    /// Batches the database refused for good, split to find the message it refuses.
    pub isolated: AtomicU64,
    /// Messages the database refuses for good (a constraint, a value that does not fit),
    /// dead-lettered.
    pub refused_by_database: AtomicU64,
    /// Orders' ends stored: cancelled.
    pub orders_cancelled: AtomicU64,
    /// Orders' ends stored: expired.
    pub orders_expired: AtomicU64,
    /// Orders' ends stored: paid.
    pub orders_paid: AtomicU64,
    /// Orders' ends parked to wait for their admission (also in `parked_total`).
    pub order_ends_parked: AtomicU64,
    /// Parked orders' ends applied once their admission was stored (also in `unparked_total`).
    pub order_ends_unparked: AtomicU64,
    /// Ended orders' records removed from Redis.
    pub orders_forgotten: AtomicU64,
    /// Admissions a guard of MySQL refused, parked to wait for units to come back (also in
    /// `parked_total`).
    pub admissions_parked: AtomicU64,
    /// Parked admissions confirmed once units came back (also in `unparked_total`).
    pub admissions_unparked: AtomicU64,
    /// Parked admissions still refused when their wait was over: stored rejected and
    /// announced (also in `rejected` and `unparked_total`).
    pub admissions_rejected_after_wait: AtomicU64,
}

/// What one batch adds to the counters: gathered while its parts are written, added once its
/// offsets are committed ([`Metrics::count`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Orders inserted as confirmed.
    pub persisted: u64,
    /// Coupons inserted as issued.
    pub coupons_issued: u64,
    /// Coupon redemption changes applied.
    pub coupon_changes: u64,
    /// Ledger rows that moved a balance.
    pub points_written: u64,
    /// Point uses and refunds refused now (not the refusals a replay announces again).
    pub points_refused: u64,
    /// Orders, coupons, changes and point events already stored.
    pub duplicates: u64,
    /// Orders and coupons rejected now by the database's guards.
    pub rejected: u64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// The same, by reason ([`Reason::index`]).
    pub dead_letters: ByReason,
    /// Events parked to wait for their record.
    pub parked: u64,
    /// Parked events decided.
    pub unparked: u64,
    /// Batches the database refused for good, split.
    pub isolated: u64,
    /// Messages the database refuses for good.
    pub refused_by_database: u64,
    /// Orders cancelled now.
    pub orders_cancelled: u64,
    /// Orders expired now.
    pub orders_expired: u64,
    /// Orders paid now.
    pub orders_paid: u64,
    /// Orders' ends parked now (counted in `parked` too).
    pub order_ends_parked: u64,
    /// Parked orders' ends applied now (counted in `unparked` too).
    pub order_ends_unparked: u64,
    /// Ended orders' records removed from Redis.
    pub orders_forgotten: u64,
    /// Refused admissions parked now (counted in `parked` too).
    pub admissions_parked: u64,
    /// Parked admissions confirmed now (counted in `unparked` too).
    pub admissions_unparked: u64,
    /// Parked admissions rejected now, their wait over (counted in `rejected` and `unparked`
    /// too).
    pub admissions_rejected_after_wait: u64,
    /// Parts of the batch written (the whole batch, unless it was split).
    pub batches: u64,
    /// Messages in them.
    pub batch_messages: u64,
    /// Time spent writing them, in microseconds.
    pub batch_micros: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.persisted += other.persisted;
        self.coupons_issued += other.coupons_issued;
        self.coupon_changes += other.coupon_changes;
        self.points_written += other.points_written;
        self.points_refused += other.points_refused;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.dead_lettered += other.dead_lettered;
        for (mine, theirs) in self.dead_letters.iter_mut().zip(other.dead_letters) {
            *mine += theirs;
        }
        self.parked += other.parked;
        self.unparked += other.unparked;
        self.isolated += other.isolated;
        self.refused_by_database += other.refused_by_database;
        self.orders_cancelled += other.orders_cancelled;
        self.orders_expired += other.orders_expired;
        self.orders_paid += other.orders_paid;
        self.order_ends_parked += other.order_ends_parked;
        self.order_ends_unparked += other.order_ends_unparked;
        self.orders_forgotten += other.orders_forgotten;
        self.admissions_parked += other.admissions_parked;
        self.admissions_unparked += other.admissions_unparked;
        self.admissions_rejected_after_wait += other.admissions_rejected_after_wait;
        self.batches += other.batches;
        self.batch_messages += other.batch_messages;
        self.batch_micros += other.batch_micros;
    }

    /// Whether events were parked or unparked: the parked gauges are read again.
    pub fn moved_parked_events(&self) -> bool {
        self.parked + self.unparked > 0
    }
}

impl Metrics {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds a batch's counts to the counters.
    pub fn count(&self, counts: &Counts) {
        for (counter, n) in [
            (&self.persisted, counts.persisted),
            (&self.coupons_issued, counts.coupons_issued),
            (&self.coupon_changes, counts.coupon_changes),
            (&self.points_written, counts.points_written),
            (&self.points_refused, counts.points_refused),
            (&self.duplicates, counts.duplicates),
            (&self.rejected, counts.rejected),
            (&self.dead_lettered, counts.dead_lettered),
            (&self.parked_total, counts.parked),
            (&self.unparked_total, counts.unparked),
            (&self.isolated, counts.isolated),
            (&self.refused_by_database, counts.refused_by_database),
            (&self.orders_cancelled, counts.orders_cancelled),
            (&self.orders_expired, counts.orders_expired),
            (&self.orders_paid, counts.orders_paid),
            (&self.order_ends_parked, counts.order_ends_parked),
            (&self.order_ends_unparked, counts.order_ends_unparked),
            (&self.orders_forgotten, counts.orders_forgotten),
            (&self.admissions_parked, counts.admissions_parked),
            (&self.admissions_unparked, counts.admissions_unparked),
            (
                &self.admissions_rejected_after_wait,
                counts.admissions_rejected_after_wait,
            ),
            (&self.batches, counts.batches),
            (&self.batch_messages, counts.batch_messages),
            (&self.batch_micros, counts.batch_micros),
        ] {
            Self::add(counter, n);
        }
        for (counter, n) in self.dead_letters.iter().zip(counts.dead_letters) {
            Self::add(counter, n);
        }
    }

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
