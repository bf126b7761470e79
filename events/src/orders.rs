//! The events of an order: admitted by Redis, or refused by the database's guard.

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
}
