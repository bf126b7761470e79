//! Flash sales: the manager's input, the MySQL record, and the Redis state derived from it.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use fred::prelude::{HashesInterface, KeysInterface, Pool, PubsubInterface, SetsInterface, Value};
use serde::{Deserialize, Serialize};
use sqlx::{MySqlPool, Row};

use crate::error::ApiError;
use crate::keys::{self, SaleKeys};
use crate::scripts::Script;

/// Largest stock one sale may offer.
pub const MAX_STOCK: u32 = 10_000_000;

/// `POST /v1/admin/sales` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSale {
    /// Product code, 1 to 64 characters.
    pub sku: String,
    /// Display title, 1 to 200 characters.
    pub title: String,
    /// Unit price in integer minor units.
    pub price: u64,
    /// Units offered, 1 to 10,000,000.
    pub stock: u32,
    /// Most units one shopper may buy, at least 1.
    pub per_user_limit: u32,
    /// Opening time (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// Closing time (RFC 3339), after `starts_at`.
    pub ends_at: DateTime<Utc>,
}

impl NewSale {
    /// 400 naming the first field that is wrong.
    pub fn validate(&self) -> Result<(), ApiError> {
        let sku = self.sku.trim();
        if sku.is_empty() || sku.chars().count() > 64 {
            return Err(ApiError::invalid("sku: must have 1 to 64 characters"));
        }
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(ApiError::invalid("title: must have 1 to 200 characters"));
        }
        if self.price > i64::MAX as u64 / u64::from(MAX_STOCK) {
            return Err(ApiError::invalid("price: too large"));
        }
        if !(1..=MAX_STOCK).contains(&self.stock) {
            return Err(ApiError::invalid(format!(
                "stock: must be between 1 and {MAX_STOCK}"
            )));
        }
        if self.per_user_limit < 1 {
            return Err(ApiError::invalid("per_user_limit: must be at least 1"));
        }
        if self.ends_at <= self.starts_at {
            return Err(ApiError::invalid("ends_at: must be after starts_at"));
        }
        if self.ends_at <= Utc::now() {
            return Err(ApiError::invalid("ends_at: must be in the future"));
        }
        Ok(())
    }
}

/// A sale as stored in MySQL.
#[derive(Debug, Clone, Serialize)]
pub struct Sale {
    /// Id given by MySQL.
    pub sale_id: u64,
    /// Product code.
    pub sku: String,
    /// Display title.
    pub title: String,
    /// Unit price, integer minor units.
    pub price: u64,
    /// Units offered.
    pub stock: u32,
    /// Units persisted as sold (the persister moves this).
    #[serde(skip)]
    pub sold: u32,
    /// Most units per shopper.
    pub per_user_limit: u32,
    /// Opening time.
    pub starts_at: DateTime<Utc>,
    /// Closing time.
    pub ends_at: DateTime<Utc>,
    /// `active` or `paused`.
    pub status: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A sale with its live counters, as the manager API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SaleView {
    /// The stored sale.
    #[serde(flatten)]
    pub sale: Sale,
    /// Units left in Redis (null when Redis does not hold the sale).
    pub remaining: Option<i64>,
    /// Units admitted in Redis.
    pub admitted: Option<i64>,
    /// Units in orders persisted (confirmed) in MySQL.
    pub persisted: u32,
}

const SALE_COLUMNS: &str = "sale_id, sku, title, price, total, sold, per_user_limit, \
     starts_at, ends_at, status, created_at";

fn utc(naive: NaiveDateTime) -> DateTime<Utc> {
    naive.and_utc()
}

fn sale_from_row(row: &sqlx::mysql::MySqlRow) -> Result<Sale, sqlx::Error> {
    Ok(Sale {
        sale_id: row.try_get("sale_id")?,
        sku: row.try_get("sku")?,
        title: row.try_get("title")?,
        price: row.try_get("price")?,
        stock: row.try_get("total")?,
        sold: row.try_get("sold")?,
        per_user_limit: row.try_get("per_user_limit")?,
        starts_at: utc(row.try_get("starts_at")?),
        ends_at: utc(row.try_get("ends_at")?),
        status: row.try_get("status")?,
        created_at: utc(row.try_get("created_at")?),
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
async fn persisted_buyers(db: &MySqlPool, sale_id: u64) -> anyhow::Result<Vec<(String, i64)>> {
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

/// Loads a sale into Redis unless Redis already holds it (then its live counters win), and
/// registers its outbox with the relay. Returns whether it was loaded.
pub async fn load_into_redis(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    prefix: &str,
    sale: &Sale,
) -> anyhow::Result<bool> {
    let keys = SaleKeys::new(prefix, sale.sale_id);
    let buyers = if sale.sold > 0 {
        persisted_buyers(db, sale.sale_id).await?
    } else {
        Vec::new()
    };
    let mut args: Vec<Value> = vec![
        sale.status.as_str().into(),
        sale.starts_at.timestamp_millis().into(),
        sale.ends_at.timestamp_millis().into(),
        i64::try_from(sale.price).unwrap_or(i64::MAX).into(),
        i64::from(sale.per_user_limit).into(),
        i64::from(sale.stock).into(),
        (i64::from(sale.stock) - i64::from(sale.sold)).into(),
        i64::from(sale.sold).into(),
    ];
    for (user, units) in buyers {
        args.push(user.into());
        args.push(units.into());
    }
    let state = vec![keys.sale, keys.stock, keys.buyers];
    let loaded = load_and_register(redis, script, state, args, prefix, &keys.outbox).await?;
    if loaded {
        // A restored sale may have stock again: gateways drop their sold-out marks.
        let _: i64 = redis
            .next()
            .publish(keys::restock_channel(prefix), sale.sale_id)
            .await
            .context("announcing restock")?;
    }
    Ok(loaded)
}

/// Runs a load script (which never overwrites what Redis holds) on `state`, and registers
/// `outbox` with the relay. Returns whether the script loaded anything.
pub async fn load_and_register(
    redis: &Pool,
    script: &Script,
    state: Vec<String>,
    args: Vec<Value>,
    prefix: &str,
    outbox: &str,
) -> anyhow::Result<bool> {
    let loaded: i64 = script
        .run(redis, state, args)
        .await
        .context("loading state into Redis")?;
    let _: i64 = redis
        .sadd(keys::active_outboxes(prefix), outbox)
        .await
        .context("registering the outbox with the relay")?;
    Ok(loaded == 1)
}

/// Restores every open sale that Redis lost (after a restart without data, or a failover
/// that lost writes). Returns how many were loaded.
pub async fn restore(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    prefix: &str,
) -> anyhow::Result<usize> {
    let mut loaded = 0;
    for sale in open_sales(db).await? {
        if load_into_redis(redis, db, script, prefix, &sale).await? {
            tracing::warn!(
                sale_id = sale.sale_id,
                "sale restored into Redis from MySQL"
            );
            loaded += 1;
        }
    }
    Ok(loaded)
}

/// Live counters of a sale from Redis: `(remaining, admitted)`.
pub async fn live_counters(
    redis: &Pool,
    prefix: &str,
    sale_id: u64,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let keys = SaleKeys::new(prefix, sale_id);
    let remaining: Option<i64> = redis.get(&keys.stock).await.context("reading stock")?;
    let admitted: Option<i64> = redis
        .hget(&keys.sale, "admitted")
        .await
        .context("reading admitted")?;
    Ok((remaining, admitted))
}

/// Sets a sale's status (`active` or `paused`) in MySQL and in Redis. Returns false when
/// there is no such sale.
pub async fn set_status(
    redis: &Pool,
    db: &MySqlPool,
    prefix: &str,
    sale_id: u64,
    status: &str,
) -> anyhow::Result<bool> {
    let updated = sqlx::query("UPDATE sales SET status = ? WHERE sale_id = ?")
        .bind(status)
        .bind(sale_id)
        .execute(db)
        .await
        .context("updating sale status")?;
    if updated.rows_affected() == 0 && find(db, sale_id).await?.is_none() {
        return Ok(false);
    }
    set_status_in_redis(redis, &SaleKeys::new(prefix, sale_id).sale, status).await?;
    Ok(true)
}

/// Sets `status` in the state hash of a sale or policy, only when Redis holds it: a missing
/// one is restored from MySQL with the new status.
pub async fn set_status_in_redis(redis: &Pool, hash: &str, status: &str) -> anyhow::Result<()> {
    let present: bool = redis.exists(hash).await.context("checking Redis state")?;
    if present {
        let _: i64 = redis
            .hset(hash, ("status", status))
            .await
            .context("updating status in Redis")?;
    }
    Ok(())
}
