//! Orders' ends in MySQL, in the batch's transaction: the orders named locked and read, each
//! end decided ([`super::ends`]), then written — the order's new status with its time and
//! reason, its history row, and the units a cancellation or expiry gives back to `sold`. A paid
//! order cancelled keeps its `paid_at`: both steps stay in its row and in its history.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use flashgate_events::OrderEnd;
use sqlx::{MySqlConnection, QueryBuilder, Row};

use super::ends::{End, EndDecisions, Ordered};
use super::history::{self, Transition};
use super::rules::SaleRow;

/// Locks the rows of the orders `ids` (`FOR UPDATE`, after their sales: the lock order of
/// every batch) and reads what an end needs of them. An end is decided against the row as it
/// stands, and nothing else changes the row before this transaction ends.
pub(super) async fn lock_orders(
    tx: &mut MySqlConnection,
    ids: &HashSet<&str>,
) -> Result<HashMap<String, Ordered>, sqlx::Error> {
    let mut rows = HashMap::new();
    if ids.is_empty() {
        return Ok(rows);
    }
    let mut query = QueryBuilder::new(
        "SELECT order_id, sale_id, user_id, quantity, amount, status, paid_at FROM orders \
         WHERE order_id IN (",
    );
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(") FOR UPDATE");
    for row in query.build().fetch_all(&mut *tx).await? {
        rows.insert(
            row.try_get("order_id")?,
            Ordered {
                sale_id: row.try_get("sale_id")?,
                user_id: row.try_get("user_id")?,
                quantity: row.try_get("quantity")?,
                amount: row.try_get("amount")?,
                status: row.try_get("status")?,
                paid: row
                    .try_get::<Option<NaiveDateTime>, _>("paid_at")?
                    .is_some(),
            },
        );
    }
    Ok(rows)
}

/// The column holding when an order ended `end`.
fn time_column(end: OrderEnd) -> &'static str {
    match end {
        OrderEnd::Cancelled => "cancelled_at",
        OrderEnd::Expired => "expired_at",
        OrderEnd::Paid => "paid_at",
    }
}

/// Writes what `decided` stores: one update of the confirmed orders ended (guarded by
/// `status = 'confirmed'`), then one of the paid orders cancelled (guarded by `status =
/// 'paid'`; after the first, so an order paid and cancelled in one batch is both), their
/// history rows, and one update per sale given units back (also taken off the locked `sales`,
/// so the batch's admissions are decided against them).
pub(super) async fn apply(
    tx: &mut MySqlConnection,
    decided: &EndDecisions<'_>,
    sales: &mut HashMap<u64, SaleRow>,
) -> Result<(), sqlx::Error> {
    update(tx, &decided.applied, "confirmed").await?;
    update(tx, &decided.paid_cancelled, "paid").await?;
    let transitions: Vec<Transition<'_>> = decided
        .applied
        .iter()
        .map(|end| (end, "confirmed"))
        .chain(decided.paid_cancelled.iter().map(|end| (end, "paid")))
        .map(|(end, from)| Transition {
            event_id: end.event.event_id(),
            order_id: &end.event.order_id,
            from,
            to: end.event.end.status(),
            reason: end.stored_reason(),
            at: end.event.at.naive_utc(),
        })
        .collect();
    history::record(tx, &transitions).await?;
    for (&sale_id, &units) in &decided.sold_back {
        sqlx::query("UPDATE sales SET sold = sold - ? WHERE sale_id = ?")
            .bind(units)
            .bind(sale_id)
            .execute(&mut *tx)
            .await?;
        if let Some(sale) = sales.get_mut(&sale_id) {
            sale.sold = sale.sold.saturating_sub(units);
        }
    }
    Ok(())
}

/// One update of the orders `ended`, each from status `from` to its end, with the end's time
/// in its own column (the others, `paid_at` among them, kept) and its reason.
async fn update(
    tx: &mut MySqlConnection,
    ended: &[&End],
    from: &'static str,
) -> Result<(), sqlx::Error> {
    if ended.is_empty() {
        return Ok(());
    }
    let mut update = QueryBuilder::new("UPDATE orders SET status = CASE order_id");
    for end in ended {
        update
            .push(" WHEN ")
            .push_bind(&end.event.order_id)
            .push(" THEN ")
            .push_bind(end.event.end.status());
    }
    update.push(" END");
    for kind in [OrderEnd::Cancelled, OrderEnd::Expired, OrderEnd::Paid] {
        let column = time_column(kind);
        let mut of_kind = ended.iter().filter(|e| e.event.end == kind).peekable();
        if of_kind.peek().is_none() {
            continue;
        }
        update.push(format!(", {column} = CASE order_id"));
        for end in of_kind {
            update
                .push(" WHEN ")
                .push_bind(&end.event.order_id)
                .push(" THEN ")
                .push_bind(end.event.at.naive_utc());
        }
        update.push(format!(" ELSE {column} END"));
    }
    update.push(", close_reason = CASE order_id");
    for end in ended {
        update
            .push(" WHEN ")
            .push_bind(&end.event.order_id)
            .push(" THEN ")
            .push_bind(end.stored_reason());
    }
    update
        .push(" END WHERE status = ")
        .push_bind(from)
        .push(" AND order_id IN (");
    let mut list = update.separated(", ");
    for end in ended {
        list.push_bind(&end.event.order_id);
    }
    update.push(")");
    update.build().execute(&mut *tx).await?;
    Ok(())
}
