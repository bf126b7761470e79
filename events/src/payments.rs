//! The events of a payment: asked for by the shopper (through the sale's outbox), a refund
//! asked for a paid order that is being cancelled, and what the saga decided (announced on the
//! lifecycle topic for whoever tells the shopper).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Envelope;

/// Event type of a payment asked for: the order is `payment_pending` in Redis.
pub const PAYMENT_REQUESTED: &str = "payment.requested";

/// Event type of a refund asked for: a paid order is being cancelled (`refund_pending`).
pub const PAYMENT_REFUND_REQUESTED: &str = "payment.refund_requested";

/// Event type of a charge that went through and paid its order.
pub const PAYMENT_COMPLETED: &str = "payment.completed";

/// Event type of a charge the provider declined (the order is cancelled).
pub const PAYMENT_FAILED: &str = "payment.failed";

/// Event type of a charge given back (the order did not end paid, or a paid one was cancelled).
pub const PAYMENT_REFUNDED: &str = "payment.refunded";

/// A payment asked for by the order's shopper, written by `lua/order_close.lua` (`pay_start`)
/// into the sale's outbox and relayed to the payments topic keyed by order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequested {
    /// The order to pay.
    pub order_id: String,
    /// Its sale.
    pub sale_id: u64,
    /// The payer.
    pub user_id: String,
    /// What to charge, integer minor units: the order's amount minus the discounts reserved on
    /// it (never below zero; a zero amount never reaches the saga).
    pub amount: u64,
    /// The shopper's payment token, handed to the provider as is.
    pub payment_token: String,
    /// The order's `pay_by`.
    pub pay_by: DateTime<Utc>,
    /// `pay_by` + `payments.grace_seconds`: past it the charge is given up and the order
    /// expires.
    pub give_up_at: DateTime<Utc>,
    /// When Redis took the request.
    pub requested_at: DateTime<Utc>,
}

impl PaymentRequested {
    /// Wraps the event; an order is paid for at most once, so `<type>:<order id>` is unique.
    pub fn into_envelope(self, trace_id: String) -> Envelope<Self> {
        let event_id = format!("{PAYMENT_REQUESTED}:{}", self.order_id);
        let at = self.requested_at;
        Envelope::v1(PAYMENT_REQUESTED, event_id, at, trace_id, self)
    }
}

/// A refund asked for: a paid order is being cancelled (by its shopper while the sale runs,
/// or by a manager). The saga refunds its charge, then ends the order `cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequested {
    /// The paid order.
    pub order_id: String,
    /// Its sale.
    pub sale_id: u64,
    /// Its shopper.
    pub user_id: String,
    /// Why it is cancelled (`cancelled_by_shopper`, a manager's reason).
    pub reason: String,
    /// When Redis took the request.
    pub requested_at: DateTime<Utc>,
}

impl RefundRequested {
    /// Wraps the event; an order is refunded at most once, so `<type>:<order id>` is unique.
    pub fn into_envelope(self, trace_id: String) -> Envelope<Self> {
        let event_id = format!("{PAYMENT_REFUND_REQUESTED}:{}", self.order_id);
        let at = self.requested_at;
        Envelope::v1(PAYMENT_REFUND_REQUESTED, event_id, at, trace_id, self)
    }
}

/// What became of a payment, announced by the saga on the lifecycle topic (type
/// `payment.completed`, `payment.failed` or `payment.refunded`), keyed by order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentOutcome {
    /// The order.
    pub order_id: String,
    /// Its sale.
    pub sale_id: u64,
    /// The payer.
    pub user_id: String,
    /// The amount charged (or refunded), integer minor units.
    pub amount: u64,
    /// The provider's charge id, when a charge exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
    /// Why it failed (`card_declined`, `invalid_token`, ...) or was refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    /// Provider calls made.
    pub attempts: u32,
    /// When the saga decided it.
    pub at: DateTime<Utc>,
}

impl PaymentOutcome {
    /// Wraps the outcome as `kind` (one of the three types above); each happens at most once
    /// per order, so `<type>:<order id>` is unique.
    pub fn into_envelope(self, kind: &str, trace_id: String) -> Envelope<Self> {
        let event_id = format!("{kind}:{}", self.order_id);
        let at = self.at;
        Envelope::v1(kind, event_id, at, trace_id, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_request_round_trips_with_an_event_id_of_its_order() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).expect("time");
        let request = PaymentRequested {
            order_id: "7-abc".to_owned(),
            sale_id: 7,
            user_id: "ann".to_owned(),
            amount: 1_990,
            payment_token: "tok_ok".to_owned(),
            pay_by: at,
            give_up_at: at,
            requested_at: at,
        };
        let envelope = request.into_envelope("t".to_owned());
        assert_eq!(envelope.event_id, "payment.requested:7-abc");
        let json = serde_json::to_string(&envelope).expect("json");
        let back: Envelope<PaymentRequested> = serde_json::from_str(&json).expect("back");
        assert_eq!(back, envelope);
    }
}
