//! The span a payment's work runs in: the order's `order_id` and the `trace_id` of the request
//! that asked for the payment (from its envelope, kept on the payment's row) — the fields the
//! gateway's request span and the persister's order span carry, so one order id (or one trace
//! id) finds the payment's lines next to the order's in every binary.

use crate::payment::Payment;

/// The span of `payment`'s steps (claimed, charge attempts and answers, refunds, giving up,
/// its end).
pub fn payment_span(payment: &Payment) -> tracing::Span {
    tracing::info_span!(
        "order",
        order_id = %payment.order_id,
        trace_id = %payment.trace_id
    )
}
