//! Admitted orders in MySQL, in the batch's transaction, idempotently: the sales locked, what
//! is stored read, each order decided ([`super::rules`]), then written.

use std::collections::{HashMap, HashSet};

use flashgate_config::PointsSettings;
use flashgate_events::OrderAdmitted;
use sqlx::{MySqlConnection, QueryBuilder, Row};

use super::rules::{self, Decisions, OrderRow, OrdersOutcome, RejectReason, SaleRow};

/// Statuses of orders that hold no units: rejected ones never did, cancelled and expired
/// ones gave theirs back. Every other order counts against its buyer's per-user limit.
const RELEASED: &str = "('rejected', 'cancelled', 'expired')";

/// Writes `orders` (in delivery order) in the caller's transaction and returns what happened.
///
/// The sales rows are locked first (`FOR UPDATE`), so two consumers that somehow hold the same
/// order serialise on its sale, and the second sees the first's insert as a duplicate; and
/// the buyers' units in the sale are read under that lock, as `sold` is.
pub async fn write(
    tx: &mut MySqlConnection,
    orders: &[OrderAdmitted],
    earning: &PointsSettings,
) -> Result<OrdersOutcome, sqlx::Error> {
    if orders.is_empty() {
        return Ok(OrdersOutcome::default());
    }
    let mut sales = lock_sales(tx, orders).await?;
    let stored = stored(tx, orders).await?;
    let mut held = units_held(tx, orders, &sales).await?;
    let decisions = rules::decide(orders, &stored, &mut sales, &mut held, earning);
    insert(tx, &decisions).await?;
    Ok(decisions.outcome)
}

/// Locks the sales of `orders` and reads their counters.
async fn lock_sales(
    tx: &mut MySqlConnection,
    orders: &[OrderAdmitted],
) -> Result<HashMap<u64, SaleRow>, sqlx::Error> {
    let sale_ids: HashSet<u64> = orders.iter().map(|o| o.sale_id).collect();
    let mut query = QueryBuilder::new(
        "SELECT sale_id, total, sold, per_user_limit FROM sales WHERE sale_id IN (",
    );
    let mut list = query.separated(", ");
    for id in &sale_ids {
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

/// One multi-row insert of the new orders, one update per sale touched.
async fn insert(tx: &mut MySqlConnection, decisions: &Decisions<'_>) -> Result<(), sqlx::Error> {
    if !decisions.rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, \
             status, reject_reason, admitted_at) ",
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
                .push_bind(order.admitted_at.naive_utc());
        });
        insert.build().execute(&mut *tx).await?;
    }
    for (&sale_id, &delta) in &decisions.sold_delta {
        sqlx::query("UPDATE sales SET sold = sold + ? WHERE sale_id = ?")
            .bind(delta)
            .bind(sale_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
