//! The span a delivery is made in: the `order_id` its event names (when it names one) and the
//! event's `trace_id` (from its envelope) — the fields the gateway's request span, the
//! persister's and the saga's order spans carry, so one order id (or one trace id) finds the
//! notifications of an order next to its other lines in every binary.

use serde::Deserialize;

use crate::store::Delivery;

/// The envelope's ids, read from a delivery's payload; anything else is ignored.
#[derive(Debug, Default, Deserialize)]
struct Ids {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    data: Data,
}

#[derive(Debug, Default, Deserialize)]
struct Data {
    #[serde(default)]
    order_id: Option<String>,
}

/// The span of `delivery`'s attempts (sent, retried, dead-lettered). An event that names no
/// order (`sale.sold_out`) has only its trace id; a payload that is no envelope, neither.
pub fn delivery_span(delivery: &Delivery) -> tracing::Span {
    let ids: Ids = serde_json::from_slice(&delivery.payload).unwrap_or_default();
    tracing::info_span!(
        "order",
        order_id = ids.data.order_id.as_deref(),
        trace_id = %ids.trace_id
    )
}
