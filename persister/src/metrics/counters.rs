//! The counters and gauges of the persister, shared by the consumer and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Counts;
use crate::dlq::reason::Reason;

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
}
