//! What one batch adds to the counters, gathered while its parts are written.

use crate::dlq::reason::ByReason;

/// What one batch adds to the counters: gathered while its parts are written, added once its
/// offsets are committed ([`Metrics::count`](super::Metrics::count)).
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
    /// The same, by reason ([`Reason::index`](crate::dlq::reason::Reason::index)).
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
