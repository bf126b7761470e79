//! Sales in MySQL, the system of record: insert, read, list, and what a restore needs (held
//! and paid units, the open and paid orders a page at a time).

use anyhow::Context;
use chrono::NaiveDateTime;
use sqlx::{MySqlPool, Row};

use crate::sales::sale::{NewSale, Sale};

const SALE_COLUMNS: &str = "sale_id, sku, title, price, total, sold, per_user_limit, \
     starts_at, ends_at, payment_window_seconds, status, created_at";

fn sale_from_row(row: &sqlx::mysql::MySqlRow) -> Result<Sale, sqlx::Error> {
    Ok(Sale {
        sale_id: row.try_get("sale_id")?,
        sku: row.try_get("sku")?,
        title: row.try_get("title")?,
        price: row.try_get("price")?,
        stock: row.try_get("total")?,
        sold: row.try_get("sold")?,
        per_user_limit: row.try_get("per_user_limit")?,
        starts_at: row.try_get::<NaiveDateTime, _>("starts_at")?.and_utc(),
        ends_at: row.try_get::<NaiveDateTime, _>("ends_at")?.and_utc(),
        payment_window_seconds: row.try_get("payment_window_seconds")?,
        status: row.try_get("status")?,
        created_at: row.try_get::<NaiveDateTime, _>("created_at")?.and_utc(),
    })
}

/// Inserts the sale into MySQL and returns it with its id.
pub async fn insert(db: &MySqlPool, new: &NewSale) -> anyhow::Result<Sale> {
    // One transaction with the sale's waiting room: a queued sale never exists without it.
    let mut tx = db.begin().await.context("inserting sale")?;
    let result = sqlx::query(
        "INSERT INTO sales (sku, title, price, total, per_user_limit, starts_at, ends_at, \
         payment_window_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.sku.trim())
    .bind(new.title.trim())
    .bind(new.price)
    .bind(new.stock)
    .bind(new.per_user_limit)
    .bind(new.starts_at.naive_utc())
    .bind(new.ends_at.naive_utc())
    .bind(new.payment_window_seconds)
    .execute(&mut *tx)
    .await
    .context("inserting sale")?;
    if let Some(queue) = &new.queue {
        crate::queue::store::insert(&mut tx, result.last_insert_id(), queue).await?;
    }
    tx.commit().await.context("inserting sale")?;
    find(db, result.last_insert_id())
        .await?
        .context("sale vanished after insert")
}

/// The sale with `sale_id`, if any.
pub async fn find(db: &MySqlPool, sale_id: u64) -> anyhow::Result<Option<Sale>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SALE_COLUMNS} FROM sales WHERE sale_id = ?"
    )))
    .bind(sale_id)
    .fetch_optional(db)
    .await
    .context("reading sale")?;
    row.as_ref()
        .map(sale_from_row)
        .transpose()
        .context("decoding sale")
}

/// Up to `limit` sales with ids below `before` (newest first): keyset pagination.
pub async fn list(db: &MySqlPool, before: Option<u64>, limit: u32) -> anyhow::Result<Vec<Sale>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SALE_COLUMNS} FROM sales WHERE sale_id < ? ORDER BY sale_id DESC LIMIT ?"
    )))
    .bind(before.unwrap_or(u64::MAX))
    .bind(limit)
    .fetch_all(db)
    .await
    .context("listing sales")?;
    rows.iter()
        .map(sale_from_row)
        .collect::<Result<_, _>>()
        .context("decoding sales")
}

/// Sales Redis must hold: the ones not over yet, and the ended ones with open orders (they
/// still hold units until paid, cancelled or expired). A sale that ended with every order
/// final has nothing to bring back: the sweeper removes such a sale from Redis, and restore
/// never brings it back.
pub async fn open_sales(db: &MySqlPool) -> anyhow::Result<Vec<Sale>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SALE_COLUMNS} FROM sales s WHERE ends_at > UTC_TIMESTAMP(3) \
         OR EXISTS (SELECT 1 FROM orders o WHERE o.sale_id = s.sale_id \
         AND o.status = 'confirmed') ORDER BY sale_id"
    )))
    .fetch_all(db)
    .await
    .context("listing open sales")?;
    rows.iter()
        .map(sale_from_row)
        .collect::<Result<_, _>>()
        .context("decoding sales")
}

/// An order of a sale as MySQL holds it, to be loaded again into Redis: an open one is held
/// again (and counts for its buyer), a paid one only counts for its buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// The order.
    pub order_id: String,
    /// Its buyer.
    pub user_id: String,
    /// Its units.
    pub quantity: u32,
    /// When Redis admitted it, ms.
    pub admitted_ms: i64,
    /// Until when it may be paid, ms (orders from before payment windows: admission + the
    /// sale's window).
    pub pay_by_ms: i64,
    /// Paid (else open, `confirmed`).
    pub paid: bool,
}

/// What MySQL says a sale's orders hold, read in one statement (one snapshot): how many are
/// open (`confirmed`) and paid, and their units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldAndPaid {
    /// Open (`confirmed`) orders.
    pub open_orders: i64,
    /// Paid orders.
    pub paid_orders: i64,
    /// Units of the open orders.
    pub held: i64,
    /// Units of the paid orders.
    pub paid: i64,
}

/// How many orders of the sale are open and paid, and their units. The orders themselves are
/// read a page at a time ([`orders_after`]): a sale may have hundreds of thousands.
pub async fn held_and_paid(db: &MySqlPool, sale_id: u64) -> anyhow::Result<HeldAndPaid> {
    let (open_orders, paid_orders, held, paid): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(status = 'confirmed'), 0) AS SIGNED), \
         CAST(COALESCE(SUM(status = 'paid'), 0) AS SIGNED), \
         CAST(COALESCE(SUM(IF(status = 'confirmed', quantity, 0)), 0) AS SIGNED), \
         CAST(COALESCE(SUM(IF(status = 'paid', quantity, 0)), 0) AS SIGNED) \
         FROM orders WHERE sale_id = ? AND status IN ('confirmed', 'paid')",
    )
    .bind(sale_id)
    .fetch_one(db)
    .await
    .context("reading the held and paid units of sale")?;
    Ok(HeldAndPaid {
        open_orders,
        paid_orders,
        held,
        paid,
    })
}

/// A page of a sale's orders, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrdersPage {
    /// The orders.
    pub orders: Vec<StoredOrder>,
    /// Whether MySQL had no more after these.
    pub last: bool,
}

/// Up to `limit` orders of the sale with ids after `after` ('' for the first page), in id
/// order: the open (`confirmed`) ones, and the paid ones too when `with_paid`. Keyset
/// pagination over the `(sale_id, status)` index, whose entries end with the order id: each
/// status is one short range read however many orders the sale has, and the two are merged.
pub async fn orders_after(
    db: &MySqlPool,
    sale: &Sale,
    after: &str,
    with_paid: bool,
    limit: u32,
) -> anyhow::Result<OrdersPage> {
    let mut orders = orders_in_status_after(db, sale, "confirmed", after, limit).await?;
    let mut last = orders.len() < limit as usize;
    if with_paid {
        let paid = orders_in_status_after(db, sale, "paid", after, limit).await?;
        last = last && paid.len() < limit as usize;
        orders.extend(paid);
        // Byte order, as MySQL sorts order ids (binary collation).
        orders.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        // The rest (ids past this page's last) come again with the next page.
        last = last && orders.len() <= limit as usize;
        orders.truncate(limit as usize);
    }
    Ok(OrdersPage { orders, last })
}

async fn orders_in_status_after(
    db: &MySqlPool,
    sale: &Sale,
    status: &str,
    after: &str,
    limit: u32,
) -> anyhow::Result<Vec<StoredOrder>> {
    let window_ms = i64::from(sale.payment_window_seconds) * 1000;
    let rows = sqlx::query(
        "SELECT order_id, user_id, quantity, admitted_at, pay_by FROM orders \
         WHERE sale_id = ? AND status = ? AND order_id > ? ORDER BY order_id LIMIT ?",
    )
    .bind(sale.sale_id)
    .bind(status)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
    .with_context(|| format!("reading {status} orders of sale"))?;
    rows.iter()
        .map(|row| {
            let admitted = row.try_get::<NaiveDateTime, _>("admitted_at")?.and_utc();
            let pay_by = row.try_get::<Option<NaiveDateTime>, _>("pay_by")?;
            let admitted_ms = admitted.timestamp_millis();
            Ok(StoredOrder {
                order_id: row.try_get("order_id")?,
                user_id: row.try_get("user_id")?,
                quantity: row.try_get("quantity")?,
                admitted_ms,
                pay_by_ms: pay_by
                    .map_or(admitted_ms + window_ms, |p| p.and_utc().timestamp_millis()),
                paid: status == "paid",
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .context("decoding orders")
}
