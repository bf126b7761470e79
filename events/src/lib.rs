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
