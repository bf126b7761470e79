//! Orders in MySQL, in the batch's transaction, idempotently: admissions (the sales locked,
//! what is stored read, each order decided by [`super::rules`], then written) and ends
//! ([`super::ends`], written by [`super::ends_store`]).
//!
//! The batch's steps, in this order:
//! 1. the sales of every admission and end are locked, in one statement (one lock order);
//! 2. ends of orders stored before this batch: a cancelled or expired order gives its units
//!    back before the admissions are decided, as it did in Redis, where the unit was then sold
//!    again (its end and the new order can land on different partitions, in one batch);
//! 3. the admissions;
//! 4. ends whose order was not stored at 2: those parked for the orders inserted at 3, then
//!    the batch's own, in delivery order. An end whose order is still not stored is parked in
//!    `parked_events` (kind `order`), and applied by the transaction that stores its admission.
//!    Both sides look under the sale's row lock, so one of them always sees the other.

use std::collections::{HashMap, HashSet};

use flashgate_config::PointsSettings;
use flashgate_events::{ORDER_ADMITTED, OrderAdmitted, OrderEnded};
use sqlx::{MySqlConnection, QueryBuilder, Row};

use super::ends::{self, End, EndDecisions};
use super::ends_store;
use super::history::{self, RESERVED, Transition};
use super::rules::{self, Decisions, OrderRow, OrdersOutcome, RejectReason, SaleRow};
use crate::parked::{self, Parked};

/// Statuses of orders that hold no units: rejected ones never did, cancelled and expired
/// ones gave theirs back. Every other order counts against its buyer's per-user limit.
const RELEASED: &str = "('rejected', 'cancelled', 'expired')";

/// Writes `orders` and `ends` (each in delivery order) in the caller's transaction and returns
/// what happened.
///
/// The sales rows are locked first (`FOR UPDATE`), so two consumers that somehow hold the same
/// order serialise on its sale, and the second sees the first's insert as a duplicate; and
/// the buyers' units in the sale are read under that lock, as `sold` is.
pub async fn write(
    tx: &mut MySqlConnection,
    orders: &[OrderAdmitted],
    ends: &[End],
    earning: &PointsSettings,
) -> Result<OrdersOutcome, sqlx::Error> {
    if orders.is_empty() && ends.is_empty() {
        return Ok(OrdersOutcome::default());
    }
    let sale_ids: HashSet<u64> = orders
        .iter()
        .map(|o| o.sale_id)
        .chain(ends.iter().map(|e| e.event.sale_id))
        .collect();
    let mut sales = lock_sales(tx, &sale_ids).await?;

    // Ends of orders stored before this batch.
    let batch_ends: Vec<&End> = ends.iter().collect();
    let first = decide_ends(tx, &batch_ends, &mut sales, earning).await?;
    let waiting: Vec<&End> = first.absent.iter().map(|&i| batch_ends[i]).collect();
    let waiting_at: Vec<usize> = first.absent.clone();

    // The admissions.
    let (mut outcome, inserted) = if orders.is_empty() {
        (OrdersOutcome::default(), Vec::new())
    } else {
        let stored = stored(tx, orders).await?;
        let mut held = units_held(tx, orders, &sales).await?;
        let decisions = rules::decide(orders, &stored, &mut sales, &mut held);
        insert(tx, &decisions).await?;
        let inserted: Vec<&str> = decisions
            .rows
            .iter()
            .map(|(order, _)| order.order_id.as_str())
            .collect();
        (decisions.outcome, inserted)
    };
    take(&mut outcome, first);

    // Ends whose order was not stored: parked ones of the orders inserted now, then the
    // batch's own.
    let (unparked, released) = load_parked(tx, &inserted).await?;
    let mut later: Vec<&End> = unparked.iter().collect();
    later.extend(&waiting);
    let second = decide_ends(tx, &later, &mut sales, earning).await?;
    let mut park: Vec<Parked> = Vec::new();
    for &position in &second.absent {
        // Parked ends were loaded for orders inserted now: only the batch's own are absent.
        let Some(at) = position
            .checked_sub(unparked.len())
            .and_then(|i| waiting_at.get(i))
        else {
            continue;
        };
        let end = batch_ends[*at];
        if sales.contains_key(&end.event.sale_id) {
            park.push(parked_end(end)?);
        } else {
            outcome.hopeless_ends.push(*at);
        }
    }
    take(&mut outcome, second);
    outcome.ends_unparked = released.len() as u64;
    outcome.ends_parked = park.len() as u64;
    parked::park(tx, parked::ORDER, &park).await?;
    parked::release(tx, parked::ORDER, &released).await?;
    Ok(outcome)
}

/// Locks and reads the orders `ends` name, decides the ends and writes what they store.
async fn decide_ends<'e>(
    tx: &mut MySqlConnection,
    ends: &[&'e End],
    sales: &mut HashMap<u64, SaleRow>,
    earning: &PointsSettings,
) -> Result<EndDecisions<'e>, sqlx::Error> {
    if ends.is_empty() {
        return Ok(EndDecisions::default());
    }
    let ids: HashSet<&str> = ends.iter().map(|e| e.event.order_id.as_str()).collect();
    let mut rows = ends_store::lock_orders(tx, &ids).await?;
    let decided = ends::decide(ends, &mut rows, earning);
    ends_store::apply(tx, &decided, sales).await?;
    Ok(decided)
}

/// Adds what `decided` did to `outcome`.
fn take(outcome: &mut OrdersOutcome, decided: EndDecisions<'_>) {
    let owned = |ends: Vec<&End>| ends.into_iter().cloned().collect::<Vec<_>>();
    outcome.ended.extend(owned(decided.applied));
    outcome.ends_found.extend(owned(decided.found));
    outcome.ends_stale.extend(owned(decided.stale));
    outcome.earns.extend(decided.earns);
}

/// The ends parked for the orders `inserted` now, oldest first, and their keys (to release).
async fn load_parked(
    tx: &mut MySqlConnection,
    inserted: &[&str],
) -> Result<(Vec<End>, Vec<(String, String)>), sqlx::Error> {
    let mut ends = Vec::new();
    let mut keys = Vec::new();
    for parked in parked::load(tx, parked::ORDER, inserted).await? {
        match serde_json::from_str::<OrderEnded>(&parked.data) {
            Ok(event) => {
                ends.push(End {
                    event,
                    trace_id: parked.trace_id,
                });
                keys.push((parked.waits_for, parked.event_key));
            }
            // Left where it is, counted in the parked gauge, for an operator to look at.
            Err(err) => tracing::error!(
                order_id = parked.waits_for,
                event = parked.event_key,
                error = %err,
                "a parked order end cannot be read back"
            ),
        }
    }
    Ok((ends, keys))
}

/// `end` as a parked event: it waits for its order; an order ends once per type, so the type
/// tells its events apart.
fn parked_end(end: &End) -> Result<Parked, sqlx::Error> {
    Ok(Parked {
        waits_for: end.event.order_id.clone(),
        event_key: end.event.end.event_type().to_owned(),
        event_type: end.event.end.event_type().to_owned(),
        data: serde_json::to_string(&end.event)
            .map_err(|err| sqlx::Error::Encode(Box::new(err)))?,
        trace_id: end.trace_id.clone(),
    })
}

/// Locks the sales `sale_ids` and reads their counters; a sale MySQL does not hold is absent.
async fn lock_sales(
    tx: &mut MySqlConnection,
    sale_ids: &HashSet<u64>,
) -> Result<HashMap<u64, SaleRow>, sqlx::Error> {
    let mut query = QueryBuilder::new(
        "SELECT sale_id, total, sold, per_user_limit FROM sales WHERE sale_id IN (",
    );
    let mut list = query.separated(", ");
    for id in sale_ids {
        list.push_bind(*id);
    }
    query.push(") FOR UPDATE");
    let mut sales: HashMap<u64, SaleRow> = HashMap::new();
    for row in query.build().fetch_all(&mut *tx).await? {
        let total: u32 = row.try_get("total")?;
        let sold: u32 = row.try_get("sold")?;
        let limit: u32 = row.try_get("per_user_limit")?;
        sales.insert(
            row.try_get("sale_id")?,
            SaleRow {
                total: u64::from(total),
                sold: u64::from(sold),
                per_user_limit: u64::from(limit),
            },
        );
    }
    Ok(sales)
}

/// Which of `orders` are already stored (and how).
async fn stored(
    tx: &mut MySqlConnection,
    orders: &[OrderAdmitted],
) -> Result<HashMap<String, OrderRow>, sqlx::Error> {
    let mut query =
        QueryBuilder::new("SELECT order_id, status, reject_reason FROM orders WHERE order_id IN (");
    let mut list = query.separated(", ");
    for order in orders {
        list.push_bind(&order.order_id);
    }
    query.push(")");
    let mut stored: HashMap<String, OrderRow> = HashMap::new();
    for row in query.build().fetch_all(&mut *tx).await? {
        stored.insert(
            row.try_get("order_id")?,
            (row.try_get("status")?, row.try_get("reject_reason")?),
        );
    }
    Ok(stored)
}

/// The units each buyer of `orders` holds in each of the locked `sales`, read under the sale
/// locks through the buyers' index: one short range per user, then only their own orders.
/// Through `orders_by_sale` it would read the whole sale, so the index is named. (A covering
/// (user, sale, status, quantity) index measured no faster here and costs every insert; and
/// the status test sits in the sum, as a NOT IN in the WHERE splits every range.)
async fn units_held(
    tx: &mut MySqlConnection,
    orders: &[OrderAdmitted],
    sales: &HashMap<u64, SaleRow>,
) -> Result<HashMap<(u64, String), u64>, sqlx::Error> {
    let mut held: HashMap<(u64, String), u64> = HashMap::new();
    if sales.is_empty() {
        return Ok(held);
    }
    let users: HashSet<&str> = orders.iter().map(|o| o.user_id.as_str()).collect();
    let mut query = QueryBuilder::new(format!(
        "SELECT user_id, sale_id, \
         CAST(SUM(IF(status IN {RELEASED}, 0, quantity)) AS UNSIGNED) AS units \
         FROM orders FORCE INDEX (orders_by_user) WHERE user_id IN ("
    ));
    let mut list = query.separated(", ");
    for user in &users {
        list.push_bind(*user);
    }
    query.push(") AND sale_id IN (");
    let mut list = query.separated(", ");
    for id in sales.keys() {
        list.push_bind(*id);
    }
    query.push(") GROUP BY user_id, sale_id");
    for row in query.build().fetch_all(&mut *tx).await? {
        held.insert(
            (row.try_get("sale_id")?, row.try_get("user_id")?),
            row.try_get("units")?,
        );
    }
    Ok(held)
}

/// One multi-row insert of the new orders and of their first history rows, one update per
/// sale touched.
async fn insert(tx: &mut MySqlConnection, decisions: &Decisions<'_>) -> Result<(), sqlx::Error> {
    if !decisions.rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, \
             status, reject_reason, admitted_at, pay_by) ",
        );
        insert.push_values(&decisions.rows, |mut row, (order, refused)| {
            row.push_bind(&order.order_id)
                .push_bind(order.sale_id)
                .push_bind(&order.user_id)
                .push_bind(order.quantity)
                .push_bind(order.unit_price)
                .push_bind(order.amount)
                .push_bind(if refused.is_some() {
                    "rejected"
                } else {
                    "confirmed"
                })
                .push_bind(refused.map(RejectReason::code))
                .push_bind(order.admitted_at.naive_utc())
                .push_bind(order.pay_by.map(|at| at.naive_utc()));
        });
        insert.build().execute(&mut *tx).await?;
    }
    let transitions: Vec<Transition<'_>> = decisions
        .rows
        .iter()
        .map(|(order, refused)| Transition {
            event_id: format!("{ORDER_ADMITTED}:{}", order.order_id),
            order_id: &order.order_id,
            from: RESERVED,
            to: if refused.is_some() {
                "rejected"
            } else {
                "confirmed"
            },
            reason: refused.map(|r| r.code().to_owned()),
            at: order.admitted_at.naive_utc(),
        })
        .collect();
    history::record(tx, &transitions).await?;
    for (&sale_id, &delta) in &decisions.sold_delta {
        sqlx::query("UPDATE sales SET sold = sold + ? WHERE sale_id = ?")
            .bind(delta)
            .bind(sale_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
