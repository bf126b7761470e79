//! Sales in MySQL, the system of record: insert, read, list, and the buyers a restore needs.

use anyhow::Context;
use chrono::NaiveDateTime;
use sqlx::{MySqlPool, Row};

use crate::sales::sale::{NewSale, Sale};

const SALE_COLUMNS: &str = "sale_id, sku, title, price, total, sold, per_user_limit, \
     starts_at, ends_at, status, created_at";

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
        status: row.try_get("status")?,
        created_at: row.try_get::<NaiveDateTime, _>("created_at")?.and_utc(),
    })
}

/// Inserts the sale into MySQL and returns it with its id.
pub async fn insert(db: &MySqlPool, new: &NewSale) -> anyhow::Result<Sale> {
    let result = sqlx::query(
        "INSERT INTO sales (sku, title, price, total, per_user_limit, starts_at, ends_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.sku.trim())
    .bind(new.title.trim())
    .bind(new.price)
    .bind(new.stock)
    .bind(new.per_user_limit)
    .bind(new.starts_at.naive_utc())
    .bind(new.ends_at.naive_utc())
    .execute(db)
    .await
    .context("inserting sale")?;
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

/// Sales that are not over yet: the ones Redis must hold.
pub async fn open_sales(db: &MySqlPool) -> anyhow::Result<Vec<Sale>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SALE_COLUMNS} FROM sales WHERE ends_at > UTC_TIMESTAMP(3) ORDER BY sale_id"
    )))
    .fetch_all(db)
    .await
    .context("listing open sales")?;
    rows.iter()
        .map(sale_from_row)
        .collect::<Result<_, _>>()
        .context("decoding sales")
}

/// Units each user already has in persisted, non-refused orders of the sale.
pub async fn persisted_buyers(db: &MySqlPool, sale_id: u64) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT user_id, CAST(SUM(quantity) AS SIGNED) AS units FROM orders \
         WHERE sale_id = ? AND status IN ('confirmed', 'paid') GROUP BY user_id",
    )
    .bind(sale_id)
    .fetch_all(db)
    .await
    .context("reading buyers of sale")?;
    rows.iter()
        .map(|row| Ok((row.try_get("user_id")?, row.try_get("units")?)))
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding buyers")
}
