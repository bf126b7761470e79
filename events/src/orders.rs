//! The events of an order: admitted by Redis, refused by the database's guard, and the
//! transitions that end it (cancelled, expired, paid).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Envelope;

/// Event type of an order admitted by Redis.
pub const ORDER_ADMITTED: &str = "order.admitted";

/// Event type of an order the database refused (its sale was already sold out in MySQL).
pub const ORDER_REJECTED: &str = "order.rejected";

/// An order admitted by the purchase script: stock was taken for it in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderAdmitted {
    /// Unique order id, made by the gateway; the persister's idempotency key.
    pub order_id: String,
    /// The sale whose stock it took (and whose `sold` it counts in MySQL).
    pub sale_id: u64,
    /// The buyer (JWT `sub`), held to the sale's per-user limit.
    pub user_id: String,
    /// Units bought.
    pub quantity: u32,
    /// Price of one unit, integer minor units.
    pub unit_price: u64,
    /// `quantity * unit_price`, integer minor units.
    pub amount: u64,
    /// When Redis admitted it.
    pub admitted_at: DateTime<Utc>,
    /// Until when it may be paid (admission + the sale's payment window, by Redis's clock).
    /// Absent in events written before orders had a payment window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_by: Option<DateTime<Utc>>,
}

impl OrderAdmitted {
    /// Wraps the order in its envelope; the event id derives from the order id, so a re-send
    /// of the same order carries the same event id.
    pub fn into_envelope(self, trace_id: String) -> Envelope<Self> {
        let event_id = format!("{ORDER_ADMITTED}:{}", self.order_id);
        let admitted_at = self.admitted_at;
        Envelope::v1(ORDER_ADMITTED, event_id, admitted_at, trace_id, self)
    }
}

/// An admitted order that failed the database's stock guard (`sold + quantity <= total`),
/// stored as `rejected`; compensation (stock back, apology) starts from this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRejected {
    /// The refused order (its event id derives from it).
    pub order_id: String,
    /// The sale, whose units a compensation gives back.
    pub sale_id: u64,
    /// The buyer, to be told (and whose per-user count a compensation gives back).
    pub user_id: String,
    /// Units the order asked for: what a compensation gives back.
    pub quantity: u32,
    /// Why it was refused.
    pub reason: String,
}

impl OrderRejected {
    /// Wraps the event; the event id derives from the order id, so re-publishing it after a
    /// crash carries the same id.
    pub fn into_envelope(self, trace_id: String, occurred_at: DateTime<Utc>) -> Envelope<Self> {
        let event_id = format!("{ORDER_REJECTED}:{}", self.order_id);
        Envelope::v1(ORDER_REJECTED, event_id, occurred_at, trace_id, self)
    }
}

/// Event type of an order cancelled (by its shopper or a manager) before it was paid.
pub const ORDER_CANCELLED: &str = "order.cancelled";

/// Event type of an order not paid by its `pay_by`.
pub const ORDER_EXPIRED: &str = "order.expired";

/// Event type of an order paid.
pub const ORDER_PAID: &str = "order.paid";

/// How an open order ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEnd {
    /// Cancelled by its shopper or a manager: its units, coupon and points come back.
    Cancelled,
    /// Not paid in time: its units, coupon and points come back.
    Expired,
    /// Paid: its units stay sold, and it earns points.
    Paid,
}

impl OrderEnd {
    /// The order's status once ended, as stored (`cancelled`, `expired`, `paid`).
    pub fn status(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Paid => "paid",
        }
    }

    /// The envelope type announcing it.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Cancelled => ORDER_CANCELLED,
            Self::Expired => ORDER_EXPIRED,
            Self::Paid => ORDER_PAID,
        }
    }

    /// The end a stored status or an outbox entry names, if it names one.
    pub fn from_status(status: &str) -> Option<Self> {
        match status {
            "cancelled" => Some(Self::Cancelled),
            "expired" => Some(Self::Expired),
            "paid" => Some(Self::Paid),
            _ => None,
        }
    }

    /// Whether the order's units and discounts go back (cancelled or expired).
    pub fn gives_back(self) -> bool {
        !matches!(self, Self::Paid)
    }
}

/// An open order that ended, decided in Redis by `lua/order_close.lua` (one end per order:
/// the script refuses a second), then stored by the persister and announced on the lifecycle
/// topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderEnded {
    /// The order.
    pub order_id: String,
    /// Its sale (a cancellation or expiry gives units back to its `sold`).
    pub sale_id: u64,
    /// The buyer.
    pub user_id: String,
    /// Units of the order.
    pub quantity: u32,
    /// How it ended.
    pub end: OrderEnd,
    /// Why, where it applies (`cancelled_by_shopper`, a manager's reason, `not_paid_in_time`,
    /// `paid_outside_flashgate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When Redis ended it.
    pub at: DateTime<Utc>,
}

impl OrderEnded {
    /// The event id: an order ends once, so `<type>:<order id>` is unique and a re-send or a
    /// re-publication carries the same id.
    pub fn event_id(&self) -> String {
        format!("{}:{}", self.end.event_type(), self.order_id)
    }

    /// Wraps the event in its envelope.
    pub fn into_envelope(self, trace_id: String) -> Envelope<Self> {
        let (kind, event_id, at) = (self.end.event_type(), self.event_id(), self.at);
        Envelope::v1(kind, event_id, at, trace_id, self)
    }
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
            pay_by: DateTime::from_timestamp_millis(1_700_000_600_123),
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
    fn an_admitted_order_written_before_payment_windows_still_reads() {
        let json = r#"{"order_id":"1-a","sale_id":1,"user_id":"u","quantity":1,"unit_price":5,"amount":5,"admitted_at":"2026-01-01T00:00:00Z"}"#;
        let order: OrderAdmitted = serde_json::from_str(json).expect("old order");
        assert_eq!(order.pay_by, None);
    }

    #[test]
    fn each_end_has_its_own_type_and_the_event_id_follows_the_order() {
        let ended = |end| OrderEnded {
            order_id: "7-x".to_owned(),
            sale_id: 7,
            user_id: "u".to_owned(),
            quantity: 1,
            end,
            reason: None,
            at: DateTime::from_timestamp_millis(1_700_000_000_000).expect("valid"),
        };
        let ids: Vec<String> = [OrderEnd::Cancelled, OrderEnd::Expired, OrderEnd::Paid]
            .map(|end| ended(end).event_id())
            .to_vec();
        assert_eq!(
            ids,
            ["order.cancelled:7-x", "order.expired:7-x", "order.paid:7-x"]
        );
        let envelope = ended(OrderEnd::Expired).into_envelope("t".to_owned());
        assert_eq!(envelope.kind, ORDER_EXPIRED);
        let json = serde_json::to_string(&envelope).expect("serialize");
        assert!(json.contains(r#""end":"expired""#), "{json}");
        let back: Envelope<OrderEnded> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, envelope);
        for end in [OrderEnd::Cancelled, OrderEnd::Expired, OrderEnd::Paid] {
            assert_eq!(OrderEnd::from_status(end.status()), Some(end));
        }
        assert!(!OrderEnd::Paid.gives_back() && OrderEnd::Expired.gives_back());
    }
}
