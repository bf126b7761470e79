//! Orders in MySQL, in the batch's transaction: the statements the batch's steps
//! ([`super::steps`]) are made of — the sales locked, what is stored of the admissions read,
//! the units each buyer holds read, the new orders and their first history rows inserted.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_events::{ORDER_ADMITTED, OrderAdmitted};
use sqlx::{MySqlConnection, QueryBuilder, Row as _};

use super::history::{self, RESERVED, Transition};
use super::rules::{OrderRow, RejectReason, Row, SaleRow};

/// Statuses of orders that hold no units: rejected ones never did, cancelled and expired
/// ones gave theirs back. Every other order counts against its buyer's per-user limit.
const RELEASED: &str = "('rejected', 'cancelled', 'expired')";

/// Locks the sales `sale_ids` and reads their counters; a sale MySQL does not hold is absent.
pub(super) async fn lock_sales(
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
pub(super) async fn stored(
    tx: &mut MySqlConnection,
    orders: &[&OrderAdmitted],
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
pub(super) async fn units_held(
    tx: &mut MySqlConnection,
    orders: &[&OrderAdmitted],
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

/// One multi-row insert of the new orders `rows` (confirmed, or rejected with why) and of their
/// first history rows, one update per sale given `sold_delta` units.
pub(super) async fn insert(
    tx: &mut MySqlConnection,
    rows: &[Row<'_>],
    sold_delta: &BTreeMap<u64, u64>,
) -> Result<(), sqlx::Error> {
    if !rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, \
             status, reject_reason, admitted_at, pay_by) ",
        );
        insert.push_values(rows, |mut row, (order, refused)| {
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
    let transitions: Vec<Transition<'_>> = rows
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
    for (&sale_id, &delta) in sold_delta {
        sqlx::query("UPDATE sales SET sold = sold + ? WHERE sale_id = ?")
            .bind(delta)
            .bind(sale_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
