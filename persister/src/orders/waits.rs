//! Admissions a guard of MySQL refuses wait for their units before they are rejected.
//!
//! A sale's events reach the persister in the order Redis decided them, except when a relay
//! dies holding some: another relay re-sends those after `gateway.relay_claim_idle_ms`,
//! behind the entries sent meanwhile. The end that gave a unit back (an order cancelled) can
//! then arrive after the admission of the order that bought it again, and MySQL's guards would
//! refuse an order Redis rightly admitted. So a refused admission is parked (`parked_events`,
//! kind [`parked::STOCK`], waiting for its sale) and decided again by every later transaction
//! that touches its sale, in admission order. Only when it still does not fit after
//! `persister.refused_admission_wait_ms` (Redis lost writes in a failover: a real oversell) is
//! it stored `rejected`; its `order.rejected` waits in `parked_events` (kind
//! [`parked::ANNOUNCE`]) until the broker has it.

use std::time::Duration;

use flashgate_events::{ORDER_ADMITTED, ORDER_REJECTED, OrderAdmitted, OrderRejected};
use sqlx::MySqlConnection;

use super::rules::RejectReason;
use crate::parked::{self, Parked};

/// An admission parked by an earlier transaction, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Waiting {
    /// The admission, as it arrived.
    pub(super) order: OrderAdmitted,
    /// The trace id it arrived with.
    pub(super) trace_id: String,
    /// Whether it has waited `persister.refused_admission_wait_ms` or longer.
    pub(super) overdue: bool,
}

/// What becomes of an admission a guard still refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Stored `rejected` now and announced.
    Reject,
    /// Parked now, to wait for units.
    Park,
    /// Left parked: its wait is not over.
    Wait,
}

/// The fate of a refused admission: `parked` tells whether it already waits (and whether its
/// wait is over); `no_wait` is a wait of 0 (refuse at once).
pub(super) fn fate(parked: Option<bool>, no_wait: bool) -> Fate {
    match parked {
        Some(true) => Fate::Reject,
        Some(false) => Fate::Wait,
        None if no_wait => Fate::Reject,
        None => Fate::Park,
    }
}

/// Sorts `waiting` in admission order (Redis's time, then the order id), the order in which
/// they take units that come back.
pub(super) fn in_admission_order(waiting: &mut [Waiting]) {
    waiting.sort_by(|a, b| {
        (a.order.admitted_at, &a.order.order_id).cmp(&(b.order.admitted_at, &b.order.order_id))
    });
}

/// The admissions parked for the sales `sale_ids`, in admission order, each with whether its
/// `wait` is over. Called under the sales' row locks: the parked rows of a sale are only
/// written under its lock, so what is read stays true until the transaction ends.
pub(super) async fn load(
    tx: &mut MySqlConnection,
    sale_ids: impl Iterator<Item = u64>,
    wait: Duration,
) -> Result<Vec<Waiting>, sqlx::Error> {
    let sales: Vec<String> = sale_ids.map(|id| id.to_string()).collect();
    let mut waiting = Vec::new();
    for (parked, overdue) in parked::load_aged(tx, parked::STOCK, &sales, wait).await? {
        match serde_json::from_str::<OrderAdmitted>(&parked.data) {
            Ok(order) => waiting.push(Waiting {
                order,
                trace_id: parked.trace_id,
                overdue,
            }),
            // Left where it is, counted in the parked gauge, for an operator to look at.
            Err(err) => tracing::error!(
                sale_id = parked.waits_for,
                order_id = parked.event_key,
                error = %err,
                "a parked admission cannot be read back"
            ),
        }
    }
    in_admission_order(&mut waiting);
    Ok(waiting)
}

/// The key of `order`'s parked row (kind [`parked::STOCK`] or [`parked::ANNOUNCE`]).
pub(super) fn key(order: &OrderAdmitted) -> (String, String) {
    (order.sale_id.to_string(), order.order_id.clone())
}

/// `order` as a parked admission: it waits for units of its sale.
pub(super) fn parked(order: &OrderAdmitted, trace_id: &str) -> Result<Parked, sqlx::Error> {
    let (waits_for, event_key) = key(order);
    Ok(Parked {
        waits_for,
        event_key,
        event_type: ORDER_ADMITTED.to_owned(),
        data: serde_json::to_string(order).map_err(|err| sqlx::Error::Encode(Box::new(err)))?,
        trace_id: trace_id.to_owned(),
    })
}

/// The refusal of `order` for `reason`, to be announced (kind [`parked::ANNOUNCE`]).
pub(super) fn announcement(
    order: &OrderAdmitted,
    reason: RejectReason,
    trace_id: &str,
) -> Result<Parked, sqlx::Error> {
    let (waits_for, event_key) = key(order);
    let rejected = OrderRejected {
        order_id: order.order_id.clone(),
        sale_id: order.sale_id,
        user_id: order.user_id.clone(),
        quantity: order.quantity,
        reason: reason.message().to_owned(),
    };
    Ok(Parked {
        waits_for,
        event_key,
        event_type: ORDER_REJECTED.to_owned(),
        data: serde_json::to_string(&rejected).map_err(|err| sqlx::Error::Encode(Box::new(err)))?,
        trace_id: trace_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn waiting(order_id: &str, admitted_ms: i64) -> Waiting {
        Waiting {
            order: OrderAdmitted {
                order_id: order_id.to_owned(),
                sale_id: 1,
                user_id: "ana".to_owned(),
                quantity: 1,
                unit_price: 1,
                amount: 1,
                admitted_at: Utc.timestamp_millis_opt(admitted_ms).unwrap(),
                pay_by: None,
            },
            trace_id: String::new(),
            overdue: false,
        }
    }

    #[test]
    fn a_refused_admission_waits_unless_no_wait_is_set_and_is_rejected_once_its_wait_is_over() {
        assert_eq!(fate(None, false), Fate::Park);
        assert_eq!(
            fate(None, true),
            Fate::Reject,
            "a wait of 0 refuses at once"
        );
        assert_eq!(fate(Some(false), false), Fate::Wait);
        assert_eq!(fate(Some(true), false), Fate::Reject);
    }

    #[test]
    fn parked_admissions_take_units_in_the_order_redis_admitted_them() {
        let mut list = [waiting("1-c", 30), waiting("1-b", 20), waiting("1-a", 20)];
        in_admission_order(&mut list);
        let ids: Vec<&str> = list.iter().map(|w| w.order.order_id.as_str()).collect();
        assert_eq!(ids, ["1-a", "1-b", "1-c"], "by time, then by order id");
    }

    #[test]
    fn an_announcement_carries_the_refusal_and_is_keyed_like_the_parked_admission() {
        let order = waiting("1-a", 0).order;
        let parked = parked(&order, "t").expect("parked");
        let announced = announcement(&order, RejectReason::SoldOut, "t").expect("announced");
        assert_eq!(
            (&parked.waits_for, &parked.event_key),
            (&announced.waits_for, &announced.event_key)
        );
        let rejected: OrderRejected = serde_json::from_str(&announced.data).expect("json");
        assert_eq!(rejected.reason, RejectReason::SoldOut.message());
        let back: OrderAdmitted = serde_json::from_str(&parked.data).expect("json");
        assert_eq!(back, order);
    }
}
