//! One batch of messages in MySQL: decoded into events, then every order, order end, coupon and
//! point event written in ONE transaction; what it decided is handed back, to settle the point
//! caches, publish and forget ended orders in Redis once the transaction has committed (see
//! [`crate::write`]).

use std::collections::HashMap;
use std::time::Duration;

use flashgate_config::PointsSettings;
use flashgate_events::{CouponIssued, OrderAdmitted};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sqlx::{MySql, MySqlPool, Transaction};

use crate::coupons::{self, CouponChange, CouponsOutcome};
use crate::decode::{Event, event};
use crate::orders::{self, End, OrderEvents, OrdersOutcome};
use crate::points::{self, PointChange, PointsOutcome};
use crate::trace;

/// The batch transaction reads what other transactions committed up to each statement (READ
/// COMMITTED): every decision is made under a row lock (the sale, the coupon policy, the
/// user's balance) taken by the statement before, and must see what the previous holder of
/// that lock wrote — a snapshot taken at the batch's first read would not. It also takes no
/// gap locks, so two consumers deadlock less. One round trip: both statements in one packet.
const BEGIN: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION";

/// The events of a batch, and the messages that can never be events.
pub struct Decoded<'m> {
    /// The batch, to find the message of an event that turns out never storable.
    pub messages: &'m [OwnedMessage],
    /// Admitted orders, in delivery order.
    pub orders: Vec<OrderAdmitted>,
    /// Orders' ends (cancelled, expired, paid), in delivery order.
    pub ends: Vec<End>,
    /// The message of each end (same index): an order's admission shares its key.
    pub end_messages: Vec<&'m OwnedMessage>,
    /// Claimed coupons.
    pub issued: Vec<CouponIssued>,
    /// Redemption changes.
    pub changes: Vec<CouponChange>,
    /// The message of each change (same index): changes are not keyed by a unique id.
    pub change_messages: Vec<&'m OwnedMessage>,
    /// Point uses and refunds.
    pub points: Vec<PointChange>,
    /// Trace ids by order id, coupon id and txid, for the events announced about them.
    pub traces: HashMap<String, String>,
    /// Messages that can never be stored, and why.
    pub poison: Vec<(&'m OwnedMessage, String)>,
}

impl<'m> Decoded<'m> {
    /// Sorts the messages of `batch` by what they carry.
    pub fn new(batch: &'m [OwnedMessage]) -> Self {
        let mut decoded = Self {
            messages: batch,
            orders: Vec::new(),
            ends: Vec::new(),
            end_messages: Vec::new(),
            issued: Vec::new(),
            changes: Vec::new(),
            change_messages: Vec::new(),
            points: Vec::new(),
            traces: HashMap::new(),
            poison: Vec::new(),
        };
        for message in batch {
            match event(message.payload()) {
                Ok((Event::Order(order), trace)) => {
                    decoded.traces.insert(order.order_id.clone(), trace);
                    decoded.orders.push(order);
                }
                Ok((Event::OrderEnded(event), trace_id)) => {
                    decoded.ends.push(End { event, trace_id });
                    decoded.end_messages.push(message);
                }
                Ok((Event::CouponIssued(coupon), trace)) => {
                    decoded.traces.insert(coupon.coupon_id.clone(), trace);
                    decoded.issued.push(coupon);
                }
                Ok((Event::CouponRedemption { redeemed, change }, trace)) => {
                    decoded.changes.push(CouponChange {
                        redeemed,
                        data: change,
                        trace_id: trace,
                    });
                    decoded.change_messages.push(message);
                }
                Ok((Event::PointsUsed(used), trace)) => {
                    decoded.traces.insert(used.txid.clone(), trace);
                    decoded.points.push(PointChange::Use(used));
                }
                Ok((Event::PointsRefunded(refund), trace)) => {
                    decoded.traces.insert(refund.txid.clone(), trace);
                    decoded.points.push(PointChange::Refund(refund));
                }
                Err(reason) => decoded.poison.push((message, reason)),
            }
        }
        decoded
    }

    /// The first message whose key is `key` (orders and coupons are keyed by their id).
    pub fn by_key(&self, key: &str) -> Option<&'m OwnedMessage> {
        self.messages
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
    }

    fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.ends.is_empty()
            && self.issued.is_empty()
            && self.changes.is_empty()
            && self.points.is_empty()
    }
}

/// What the batch's transaction did.
#[derive(Debug, Default)]
pub struct Written {
    /// What became of the orders and their ends: refusals and ends to announce, unknown sales
    /// to dead-letter, ended orders to forget in Redis.
    pub orders: OrdersOutcome,
    /// What became of the coupon events, likewise.
    pub coupons: CouponsOutcome,
    /// The orders' earnings and the point events.
    pub points: PointsOutcome,
}

/// Opens a batch transaction (READ COMMITTED: each decision sees what the previous holder
/// of its row lock committed).
pub async fn begin(db: &MySqlPool) -> Result<Transaction<'static, MySql>, sqlx::Error> {
    db.begin_with(BEGIN).await
}

/// Writes the batch's events in one transaction: orders and their ends (locking their sales,
/// then the orders ended), then coupon events (locking policies), then points (locking
/// balances) — the same lock order in every batch. The admissions parked for the sales
/// `revisit` are decided too (their wait is over), though no event of the batch names them;
/// `wait` is how long an admission a guard refuses waits for its units.
pub async fn persist(
    db: &MySqlPool,
    decoded: &Decoded<'_>,
    revisit: &[u64],
    earning: &PointsSettings,
    wait: Duration,
) -> Result<Written, sqlx::Error> {
    if decoded.is_empty() && revisit.is_empty() {
        return Ok(Written::default());
    }
    let mut tx = begin(db).await?;
    let events = OrderEvents {
        admitted: &decoded.orders,
        ends: &decoded.ends,
        traces: &decoded.traces,
        revisit,
    };
    let mut orders = orders::write(&mut tx, &events, earning, wait).await?;
    trace::stamp(&mut tx, &decoded.orders, &decoded.traces).await?;
    let coupons = coupons::write(&mut tx, &decoded.issued, &decoded.changes).await?;
    // The paid orders' earnings first, then the point events, as they were admitted.
    let mut changes = std::mem::take(&mut orders.earns);
    changes.extend(decoded.points.iter().cloned());
    let points = points::write(&mut tx, &changes, &decoded.traces).await?;
    tx.commit().await?;
    Ok(Written {
        orders,
        coupons,
        points,
    })
}
