//! Each admitted order's trace id (from its envelope): stamped on its MySQL row, and the
//! `trace_id` field of the span its log lines are written in — the same field the gateway's
//! request span carries, so one id finds the order's lines in every binary. An order's later
//! events (cancelled, expired, paid, a paid order cancelled and refunded) are logged the same
//! way, each under its own event's trace id and the order's `order_id`.

use std::collections::{HashMap, HashSet};

use flashgate_events::OrderAdmitted;
use sqlx::{MySqlConnection, QueryBuilder};

use crate::orders::{End, OrdersOutcome};

/// The longest trace id kept on an order's row (the column's width).
const TRACE_CHARS: usize = 255;

/// Sets the trace id of the batch's admitted orders whose row has none yet: one statement for
/// the batch, in its transaction. A replay finds it set and changes nothing; an order still
/// waiting for units (parked) has no row yet and is not stamped.
pub async fn stamp(
    tx: &mut MySqlConnection,
    orders: &[OrderAdmitted],
    traces: &HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    let traced: Vec<(&str, String)> = orders
        .iter()
        .filter_map(|o| {
            let trace = traces.get(&o.order_id).filter(|t| !t.is_empty())?;
            Some((
                o.order_id.as_str(),
                trace.chars().take(TRACE_CHARS).collect(),
            ))
        })
        .collect();
    if traced.is_empty() {
        return Ok(());
    }
    let mut update = QueryBuilder::new("UPDATE orders SET trace_id = CASE order_id");
    for (id, trace) in &traced {
        update.push(" WHEN ").push_bind(*id);
        update.push(" THEN ").push_bind(trace.as_str());
    }
    update.push(" END WHERE trace_id IS NULL AND order_id IN (");
    let mut ids = update.separated(", ");
    for (id, _) in &traced {
        ids.push_bind(*id);
    }
    update.push(")");
    update.build().execute(&mut *tx).await?;
    Ok(())
}

/// One line per admitted order of a committed batch, in a span carrying its `trace_id` and
/// `order_id`: what became of it. Debug level (a line per order is much at full rush); an
/// operator turns it on with `RUST_LOG=info,flashgate_persister::trace=debug`.
pub fn log_orders(
    orders: &[OrderAdmitted],
    traces: &HashMap<String, String>,
    outcome: &OrdersOutcome,
) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    for order in orders {
        let id = order.order_id.as_str();
        let trace = traces.get(id).map_or("", String::as_str);
        let status = if outcome.duplicates.iter().any(|d| d == id) {
            "already stored"
        } else if outcome.confirmed.iter().any(|c| c == id) {
            "confirmed"
        } else if outcome.rejected.iter().any(|(r, _)| r.order_id == id) {
            "rejected"
        } else if outcome.unknown_sale.iter().any(|u| u.order_id == id) {
            "unknown sale"
        } else {
            "waiting for units"
        };
        let span = tracing::info_span!("order", trace_id = %trace, order_id = %id);
        span.in_scope(|| tracing::debug!(sale_id = order.sale_id, status, "order persisted"));
    }
}

/// One line per order end a committed batch decided (its own, and those it took out of
/// waiting), in a span carrying the end's `trace_id` and its `order_id`: what became of it.
/// Debug level, under the same switch as [`log_orders`].
pub fn log_ends(ends: &[End], outcome: &OrdersOutcome) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let decided = [
        (&outcome.ended, "stored"),
        (&outcome.ends_found, "already stored"),
        (&outcome.ends_stale, "order final otherwise"),
    ];
    let mut logged: HashSet<(&str, &str)> = HashSet::new();
    for (list, status) in decided {
        for end in list {
            logged.insert((end.event.order_id.as_str(), end.event.end.status()));
            log_end(end, status);
        }
    }
    for (at, end) in ends.iter().enumerate() {
        if logged.contains(&(end.event.order_id.as_str(), end.event.end.status())) {
            continue;
        }
        let status = if outcome.hopeless_ends.contains(&at) {
            "unknown order"
        } else {
            "waiting for its order"
        };
        log_end(end, status);
    }
}

fn log_end(end: &End, status: &str) {
    let event = &end.event;
    let span = tracing::info_span!("order", trace_id = %end.trace_id, order_id = %event.order_id);
    span.in_scope(|| {
        tracing::debug!(
            sale_id = event.sale_id,
            end = event.end.status(),
            status,
            "order end persisted"
        );
    });
}
