//! What flashgate's processes must agree on: the Kafka wire format (an envelope around each
//! event, and the events themselves) and, in [`keys`], the Redis key layout.
//!
//! The gateway (producer), the persister (consumer), the batch jobs and the load test all use
//! these types, so they can never disagree on a field name or a key.

pub mod keys;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Kafka header that carries the trace id (also inside the envelope).
pub const TRACE_HEADER: &str = "trace_id";

/// Event type of an order admitted by Redis.
pub const ORDER_ADMITTED: &str = "order.admitted";

/// Event type of an order the database refused (its sale was already sold out in MySQL).
pub const ORDER_REJECTED: &str = "order.rejected";

/// Every message on every topic: what it is, which version of its shape, a unique id, when it
/// happened, the trace it belongs to, and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// Event type, such as `order.admitted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Version of the data's shape for this type.
    pub version: u32,
    /// Unique per event; a re-sent event keeps its id.
    pub event_id: String,
    /// When the event happened (for admissions: Redis's clock).
    pub occurred_at: DateTime<Utc>,
    /// Trace id of the request that caused it.
    pub trace_id: String,
    /// The event itself.
    pub data: T,
}

/// An order admitted by the purchase script: stock was taken for it in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderAdmitted {
    /// Unique order id, made by the gateway.
    pub order_id: String,
    /// The sale.
    pub sale_id: u64,
    /// The buyer (JWT `sub`).
    pub user_id: String,
    /// Units bought.
    pub quantity: u32,
    /// Price of one unit, integer minor units.
    pub unit_price: u64,
    /// `quantity * unit_price`, integer minor units.
    pub amount: u64,
    /// When Redis admitted it.
    pub admitted_at: DateTime<Utc>,
}

impl OrderAdmitted {
    /// Wraps the order in its envelope; the event id derives from the order id, so a re-send
    /// of the same order carries the same event id.
    pub fn into_envelope(self, trace_id: String) -> Envelope<Self> {
        Envelope {
            kind: ORDER_ADMITTED.to_owned(),
            version: 1,
            event_id: format!("{ORDER_ADMITTED}:{}", self.order_id),
            occurred_at: self.admitted_at,
            trace_id,
            data: self,
        }
    }
}

/// An admitted order that failed the database's stock guard (`sold + quantity <= total`),
/// stored as `rejected`; compensation (stock back, apology) starts from this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRejected {
    /// The order.
    pub order_id: String,
    /// The sale.
    pub sale_id: u64,
    /// The buyer.
    pub user_id: String,
    /// Units the order asked for.
    pub quantity: u32,
    /// Why it was refused.
    pub reason: String,
}

impl OrderRejected {
    /// Wraps the event; the event id derives from the order id, so re-publishing it after a
    /// crash carries the same id.
    pub fn into_envelope(self, trace_id: String, occurred_at: DateTime<Utc>) -> Envelope<Self> {
        Envelope {
            kind: ORDER_REJECTED.to_owned(),
            version: 1,
            event_id: format!("{ORDER_REJECTED}:{}", self.order_id),
            occurred_at,
            trace_id,
            data: self,
        }
    }
}

/// Event type of a coupon issued by the claim script.
pub const COUPON_ISSUED: &str = "coupon.issued";

/// Event type of a coupon applied to an order.
pub const COUPON_REDEEMED: &str = "coupon.redeemed";

/// Event type of a redemption undone (the order was cancelled): the coupon is `issued` again.
pub const COUPON_REDEMPTION_CANCELLED: &str = "coupon.redemption_cancelled";

/// Event type of a claimed coupon the database refused (the policy was exhausted in MySQL).
pub const COUPON_REJECTED: &str = "coupon.rejected";

impl<T> Envelope<T> {
    /// Wraps `data` as version 1 of `kind`; `event_id` must be the same for a re-sent event.
    pub fn v1(
        kind: &str,
        event_id: String,
        occurred_at: DateTime<Utc>,
        trace_id: String,
        data: T,
    ) -> Self {
        Self {
            kind: kind.to_owned(),
            version: 1,
            event_id,
            occurred_at,
            trace_id,
            data,
        }
    }
}

/// A coupon claimed in Redis: one of the policy's coupons is now the user's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouponIssued {
    /// Unique coupon id (`<policy_id>-<uuid>`), made by the gateway.
    pub coupon_id: String,
    /// The policy.
    pub policy_id: u64,
    /// The holder (JWT `sub`).
    pub user_id: String,
    /// Which of the user's coupons of this policy it is: 1 ..= per-user limit.
    pub claim_no: u32,
    /// When Redis issued it.
    pub issued_at: DateTime<Utc>,
    /// When it stops being redeemable.
    pub expires_at: DateTime<Utc>,
}

/// A change of a coupon's redemption state; `seq` orders the changes of one coupon, so a
/// replayed older change never overwrites a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouponRedemption {
    /// The coupon.
    pub coupon_id: String,
    /// Its policy.
    pub policy_id: u64,
    /// Its holder.
    pub user_id: String,
    /// The order it was applied to (or taken back from).
    pub order_id: String,
    /// Discount granted, integer minor units (0 when cancelled).
    pub discount: u64,
    /// Position of this change among the coupon's changes (issue is 1).
    pub seq: u64,
    /// When Redis made the change.
    pub at: DateTime<Utc>,
}

/// A coupon that failed the database's guard (policy exhausted or per-user limit reached in
/// MySQL), stored as `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouponRejected {
    /// The coupon.
    pub coupon_id: String,
    /// Its policy.
    pub policy_id: u64,
    /// Its would-be holder.
    pub user_id: String,
    /// Why it was refused.
    pub reason: String,
}

/// Event type of points spent by the use script (`POST /v1/me/points/use`).
pub const POINTS_USED: &str = "points.used";

/// Event type of a use given back (`POST /v1/me/points/use/{txid}/cancel`).
pub const POINTS_REFUNDED: &str = "points.refunded";

/// Event type of a use or refund the database refused (the balance in MySQL was too low).
pub const POINTS_REJECTED: &str = "points.rejected";

/// Points spent in Redis on an order; `txid` is unique (`use-<uuid>`) and is the ledger row's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsUsed {
    /// The use's transaction id, also its ledger `txid`.
    pub txid: String,
    /// Whose points.
    pub user_id: String,
    /// Points spent (at least 1).
    pub amount: u64,
    /// The order they pay for.
    pub order_id: String,
    /// When Redis took them.
    pub at: DateTime<Utc>,
}

/// A use given back; `txid` is `refund-<uuid of the use>`, so a use is refunded at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsRefunded {
    /// The refund's transaction id.
    pub txid: String,
    /// The use it gives back.
    pub use_txid: String,
    /// Whose points.
    pub user_id: String,
    /// Points given back (the use's amount).
    pub amount: u64,
    /// When Redis gave them back.
    pub at: DateTime<Utc>,
}

/// A point change the database refused; it is recorded in the ledger with delta 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsRejected {
    /// The refused transaction.
    pub txid: String,
    /// Whose points.
    pub user_id: String,
    /// The points it asked for.
    pub amount: u64,
    /// Why it was refused.
    pub reason: String,
}

/// The ledger `txid` of the points a confirmed order earns.
pub fn earn_txid(order_id: &str) -> String {
    format!("earn-{order_id}")
}

/// The refund `txid` of a use (`use-<id>` → `refund-<id>`), or `None` if `use_txid` is not one.
pub fn refund_txid(use_txid: &str) -> Option<String> {
    use_txid
        .strip_prefix("use-")
        .filter(|id| !id.is_empty())
        .map(|id| format!("refund-{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admitted_order_round_trips_through_json_with_a_stable_event_id() {
        let order = OrderAdmitted {
            order_id: "42-abc".to_owned(),
            sale_id: 42,
            user_id: "u1".to_owned(),
            quantity: 2,
            unit_price: 1_999,
            amount: 3_998,
            admitted_at: DateTime::from_timestamp_millis(1_700_000_000_123).expect("valid"),
        };
        let envelope = order.clone().into_envelope("t-1".to_owned());
        let json = serde_json::to_string(&envelope).expect("serialize");
        assert!(json.contains(r#""type":"order.admitted""#), "{json}");
        let back: Envelope<OrderAdmitted> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, envelope);
        assert_eq!(
            order.into_envelope("t-2".to_owned()).event_id,
            back.event_id
        );
    }

    #[test]
    fn a_use_has_exactly_one_refund_txid() {
        assert_eq!(refund_txid("use-0a1b").as_deref(), Some("refund-0a1b"));
        assert_eq!(refund_txid("use-"), None);
        assert_eq!(refund_txid("earn-42-x"), None);
        assert_eq!(earn_txid("42-x"), "earn-42-x");
    }
}
