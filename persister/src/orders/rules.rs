//! The decisions on admitted orders, without I/O: the guards Redis applies, checked a second
//! time against the sale as locked in MySQL — the stock (`sold + quantity <= total`) and the
//! per-user limit (the buyer's units in the sale + quantity <= `per_user_limit`). An order
//! that fails either waits for units to come back to its sale ([`super::waits`]); one that
//! still fails when its wait is over is stored `rejected` and announced.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_events::{OrderAdmitted, SaleSoldOut};

use super::ends::End;
use crate::points::PointChange;

/// Why the database refused an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The sale had no stock left in MySQL.
    SoldOut,
    /// The buyer would hold more than the sale's per-user limit.
    PerUserLimit,
}

impl RejectReason {
    /// The value of `orders.reject_reason`.
    pub fn code(self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::PerUserLimit => "per_user_limit",
        }
    }

    /// The reason announced in `order.rejected`.
    pub fn message(self) -> &'static str {
        match self {
            Self::SoldOut => "sold out in the system of record",
            Self::PerUserLimit => "over the per-user limit in the system of record",
        }
    }

    /// The reason of a stored order (rows written before the column existed were sold out).
    pub(super) fn from_code(code: Option<&str>) -> Self {
        match code {
            Some("per_user_limit") => Self::PerUserLimit,
            _ => Self::SoldOut,
        }
    }
}

/// What one batch did to its orders.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrdersOutcome {
    /// Orders inserted as `confirmed` (their units now count in `sales.sold`).
    pub confirmed: Vec<String>,
    /// Orders already in the database (a replay or a re-send): nothing changed for them.
    pub duplicates: Vec<String>,
    /// Orders of the batch inserted as `rejected` by a guard (at once: no wait is configured),
    /// and duplicates found already rejected (their compensation event is published again),
    /// with the reason. Those rejected after waiting are announced from `parked_events`
    /// instead (kind `announce`): no message of the batch carries them.
    pub rejected: Vec<(OrderAdmitted, RejectReason)>,
    /// Orders whose sale does not exist in MySQL: never insertable, dead-lettered.
    pub unknown_sale: Vec<OrderAdmitted>,
    /// The points the orders paid now or before earn (`earn-<order>`), and those the paid
    /// orders cancelled now or before give back (`unearn-<order>`), in the order decided:
    /// each written once whatever the replays, so a batch retried after its commit still
    /// settles the caches.
    pub earns: Vec<PointChange>,
    /// Ends stored now, in the order they were applied: announced, their Redis records
    /// forgotten, counted by end.
    pub ended: Vec<End>,
    /// Ends found stored already (a replay): announced again under the same event id, their
    /// Redis records forgotten again.
    pub ends_found: Vec<End>,
    /// Ends of orders final another way (rejected, or ended otherwise): nothing changed. Their
    /// Redis records are final too, and MySQL will never take them: forgotten all the same.
    pub ends_stale: Vec<End>,
    /// Ends parked now to wait for their order's admission.
    pub ends_parked: u64,
    /// Parked ends decided now that their order is stored.
    pub ends_unparked: u64,
    /// Positions, among the batch's ends, of those that can never be stored (neither their
    /// order nor its sale exists): dead-lettered.
    pub hopeless_ends: Vec<usize>,
    /// Admissions a guard refused, parked now to wait for units to come back.
    pub admissions_parked: u64,
    /// Parked admissions confirmed now that units came back.
    pub admissions_unparked: u64,
    /// Parked admissions still refused once their wait was over: stored `rejected` now, their
    /// `order.rejected` left in `parked_events` (kind `announce`) to be published.
    pub admissions_rejected_after_wait: u64,
    /// Sales whose last unit the batch sold (`sold` reached `total`), or whose admissions it
    /// found stored again while sold out (a replay after a crash before the announcement
    /// went out): announced `sale.sold_out`, with the trace of one of the batch's orders.
    pub sold_out: Vec<(SaleSoldOut, String)>,
}

impl OrdersOutcome {
    /// The orders whose Redis records may go, as (sale, order): MySQL holds a final state of
    /// each.
    pub fn settled_ends(&self) -> impl Iterator<Item = (u64, &str)> {
        self.ended
            .iter()
            .chain(&self.ends_found)
            .chain(&self.ends_stale)
            .map(|end| (end.event.sale_id, end.event.order_id.as_str()))
    }
}

/// A sale's row, as locked: its counters (`sold` moved along as the batch decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SaleRow {
    pub(super) total: u64,
    pub(super) sold: u64,
    pub(super) per_user_limit: u64,
}

/// An order as stored: its status and, when rejected, why.
pub(super) type OrderRow = (String, Option<String>);

/// Whether a buyer who holds `held` units of a sale may add `quantity` more.
pub fn within_per_user_limit(held: u64, quantity: u64, per_user_limit: u64) -> bool {
    held + quantity <= per_user_limit
}

/// Whether a sale that has sold `sold` of its `total` units has `quantity` more.
pub fn within_stock(sold: u64, quantity: u64, total: u64) -> bool {
    sold + quantity <= total
}

/// Why a new order of `quantity` units from a buyer holding `held` is refused by `sale`, or
/// `None` when it fits. The per-user limit is looked at first.
fn refusal(sale: &SaleRow, held: u64, quantity: u64) -> Option<RejectReason> {
    if !within_per_user_limit(held, quantity, sale.per_user_limit) {
        Some(RejectReason::PerUserLimit)
    } else if !within_stock(sale.sold, quantity, sale.total) {
        Some(RejectReason::SoldOut)
    } else {
        None
    }
}

/// A row to insert: a new order and, when refused, why.
pub(super) type Row<'o> = (&'o OrderAdmitted, Option<RejectReason>);

/// What the orders come to, decided in the order given.
#[derive(Debug, Default)]
pub(super) struct Decisions<'o> {
    /// What happened to each order (`confirmed`, `duplicates`, `unknown_sale`, and the
    /// duplicates found `rejected`).
    pub(super) outcome: OrdersOutcome,
    /// The rows to insert: the new orders that fit, confirmed.
    pub(super) rows: Vec<Row<'o>>,
    /// New orders a guard refuses, and why: they wait, or are rejected ([`super::waits`]).
    pub(super) refused: Vec<(&'o OrderAdmitted, RejectReason)>,
    /// Units to add to each sale's `sold`.
    pub(super) sold_delta: BTreeMap<u64, u64>,
}

/// Decides `orders` against what is `stored`, the locked `sales` and the units each buyer
/// `held` per (sale, user); `sales` and `held` are moved along as orders are confirmed. An
/// order earns nothing here: it earns when it is paid ([`super::ends`]).
pub(super) fn decide<'o>(
    orders: &[&'o OrderAdmitted],
    stored: &HashMap<String, OrderRow>,
    sales: &mut HashMap<u64, SaleRow>,
    held: &mut HashMap<(u64, String), u64>,
) -> Decisions<'o> {
    let mut decisions = Decisions::default();
    let outcome = &mut decisions.outcome;
    let mut seen: HashSet<&str> = HashSet::new();
    for &order in orders {
        if !seen.insert(order.order_id.as_str()) {
            outcome.duplicates.push(order.order_id.clone());
            continue;
        }
        if let Some((status, reason)) = stored.get(&order.order_id) {
            outcome.duplicates.push(order.order_id.clone());
            if status == "rejected" {
                let reason = RejectReason::from_code(reason.as_deref());
                outcome.rejected.push((order.clone(), reason));
            }
            continue;
        }
        let Some(sale) = sales.get_mut(&order.sale_id) else {
            outcome.unknown_sale.push(order.clone());
            continue;
        };
        let quantity = u64::from(order.quantity);
        let units = held
            .entry((order.sale_id, order.user_id.clone()))
            .or_default();
        match refusal(sale, *units, quantity) {
            None => {
                sale.sold += quantity;
                *units += quantity;
                *decisions.sold_delta.entry(order.sale_id).or_default() += quantity;
                outcome.confirmed.push(order.order_id.clone());
                decisions.rows.push((order, None));
            }
            Some(reason) => decisions.refused.push((order, reason)),
        }
    }
    decisions
}

/// The sales that are sold out after the batch (`after`) and either were not before it
/// (`before`: each sale's `sold` as locked) or had an admission found stored again (`replayed`):
/// those to announce, by sale id. A sale sold out before and only touched by new refusals or
/// ends is not announced again.
pub(super) fn sold_out(
    before: &HashMap<u64, u64>,
    after: &HashMap<u64, SaleRow>,
    replayed: &HashSet<u64>,
) -> Vec<SaleSoldOut> {
    let mut sold_out: Vec<SaleSoldOut> = after
        .iter()
        .filter(|(id, sale)| {
            let was = before.get(id).copied().unwrap_or(sale.sold);
            sale.total > 0 && sale.sold >= sale.total && (was < sale.total || replayed.contains(id))
        })
        .map(|(&sale_id, sale)| SaleSoldOut {
            sale_id,
            total: sale.total,
            sold: sale.sold,
        })
        .collect();
    sold_out.sort_by_key(|event| event.sale_id);
    sold_out
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn order(order_id: &str, sale_id: u64, user: &str, quantity: u32) -> OrderAdmitted {
        OrderAdmitted {
            order_id: order_id.to_owned(),
            sale_id,
            user_id: user.to_owned(),
            quantity,
            unit_price: 100,
            amount: 100 * u64::from(quantity),
            admitted_at: Utc::now(),
            pay_by: None,
        }
    }

    fn sale(total: u64, sold: u64, per_user_limit: u64) -> HashMap<u64, SaleRow> {
        let sale = SaleRow {
            total,
            sold,
            per_user_limit,
        };
        HashMap::from([(1, sale)])
    }

    #[test]
    fn an_order_fits_up_to_the_last_unit_and_the_limit_exactly() {
        assert!(within_stock(9, 1, 10));
        assert!(!within_stock(10, 1, 10));
        assert!(within_per_user_limit(1, 1, 2));
        assert!(!within_per_user_limit(2, 1, 2));
    }

    #[test]
    fn an_order_over_both_guards_is_refused_for_the_per_user_limit() {
        let sale = SaleRow {
            total: 1,
            sold: 1,
            per_user_limit: 1,
        };
        assert_eq!(refusal(&sale, 1, 1), Some(RejectReason::PerUserLimit));
        assert_eq!(refusal(&sale, 0, 1), Some(RejectReason::SoldOut));
        let open = SaleRow { sold: 0, ..sale };
        assert_eq!(refusal(&open, 0, 1), None);
    }

    /// `orders` as the list [`decide`] takes.
    fn refs(orders: &[OrderAdmitted]) -> Vec<&OrderAdmitted> {
        orders.iter().collect()
    }

    #[test]
    fn orders_take_the_last_units_in_delivery_order_and_the_rest_are_refused() {
        let orders = [order("1-a", 1, "ana", 1), order("1-b", 1, "ben", 1)];
        let (mut sales, mut held) = (sale(10, 9, 5), HashMap::new());
        let decided = decide(&refs(&orders), &HashMap::new(), &mut sales, &mut held);
        assert_eq!(decided.outcome.confirmed, ["1-a"]);
        assert_eq!(decided.refused, [(&orders[1], RejectReason::SoldOut)]);
        assert!(
            decided.outcome.rejected.is_empty(),
            "refused is not yet rejected: it may wait"
        );
        assert_eq!(decided.rows, [(&orders[0], None)], "only the one that fits");
        assert_eq!(decided.sold_delta, BTreeMap::from([(1, 1)]));
        assert_eq!(sales[&1].sold, 10);
    }

    #[test]
    fn a_buyers_orders_in_one_batch_add_up_against_the_limit() {
        let orders = [order("1-a", 1, "ana", 1), order("1-b", 1, "ana", 1)];
        let mut held = HashMap::from([((1, "ana".to_owned()), 1)]);
        let decided = decide(
            &refs(&orders),
            &HashMap::new(),
            &mut sale(10, 0, 2),
            &mut held,
        );
        assert_eq!(decided.outcome.confirmed, ["1-a"]);
        assert_eq!(decided.refused, [(&orders[1], RejectReason::PerUserLimit)]);
    }

    #[test]
    fn replays_change_nothing_but_announce_refusals_again_and_earn_nothing() {
        let orders = [
            order("1-a", 1, "ana", 1),
            order("1-r", 1, "rob", 1),
            order("1-a", 1, "ana", 1),
        ];
        let stored = HashMap::from([
            ("1-a".to_owned(), ("confirmed".to_owned(), None)),
            (
                "1-r".to_owned(),
                ("rejected".to_owned(), Some("per_user_limit".to_owned())),
            ),
        ]);
        let decided = decide(
            &refs(&orders),
            &stored,
            &mut sale(10, 0, 1),
            &mut HashMap::new(),
        );
        assert!(decided.rows.is_empty(), "nothing inserted again");
        assert_eq!(decided.outcome.duplicates, ["1-a", "1-r", "1-a"]);
        assert_eq!(
            decided.outcome.rejected,
            [(orders[1].clone(), RejectReason::PerUserLimit)]
        );
        assert!(
            decided.outcome.earns.is_empty(),
            "earned when paid, not here"
        );
    }

    #[test]
    fn an_order_of_a_sale_mysql_does_not_know_is_set_aside() {
        let orders = [order("7-a", 7, "ana", 1)];
        let decided = decide(
            &refs(&orders),
            &HashMap::new(),
            &mut sale(10, 0, 1),
            &mut HashMap::new(),
        );
        assert_eq!(decided.outcome.unknown_sale, orders);
        assert!(decided.rows.is_empty());
    }

    #[test]
    fn a_sale_is_announced_sold_out_when_the_batch_sells_its_last_unit_or_replays_an_admission() {
        let row = |total, sold| SaleRow {
            total,
            sold,
            per_user_limit: 1,
        };
        let after = HashMap::from([
            (1, row(3, 3)),
            (2, row(3, 3)),
            (3, row(3, 2)),
            (4, row(3, 3)),
        ]);
        let before = HashMap::from([(1, 2), (2, 3), (3, 1), (4, 3)]);
        let ids = |events: Vec<SaleSoldOut>| events.iter().map(|e| e.sale_id).collect::<Vec<_>>();
        assert_eq!(ids(sold_out(&before, &after, &HashSet::new())), [1]);
        assert_eq!(
            ids(sold_out(&before, &after, &HashSet::from([4, 3]))),
            [1, 4]
        );
        let event = &sold_out(&before, &after, &HashSet::new())[0];
        assert_eq!((event.total, event.sold), (3, 3));
    }
}
