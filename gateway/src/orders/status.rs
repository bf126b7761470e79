//! Orders as shoppers see them: `confirmed`/`rejected`/... from MySQL once persisted, and
//! `reserved` from Redis while the order is admitted but not yet persisted.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use flashgate_events::ids;
use fred::prelude::{HashesInterface, Pool};
use serde::Serialize;
use sqlx::{MySqlPool, Row};

use crate::app::App;
use crate::failure::Failure;
use crate::keys::SaleKeys;

/// One order of one shopper.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    /// The order id.
    pub order_id: String,
    /// The sale.
    pub sale_id: u64,
    /// Units.
    pub quantity: u32,
    /// `reserved`, `confirmed`, `rejected`, `paid`, `cancelled` or `expired`.
    pub status: String,
    /// Unit price in minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<u64>,
    /// Amount in minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// When Redis admitted it (known once persisted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<DateTime<Utc>>,
}

fn from_row(row: &sqlx::mysql::MySqlRow) -> Result<OrderView, sqlx::Error> {
    let admitted: NaiveDateTime = row.try_get("admitted_at")?;
    Ok(OrderView {
        order_id: row.try_get("order_id")?,
        sale_id: row.try_get("sale_id")?,
        quantity: row.try_get("quantity")?,
        status: row.try_get("status")?,
        unit_price: Some(row.try_get("unit_price")?),
        amount: Some(row.try_get("amount")?),
        admitted_at: Some(admitted.and_utc()),
    })
}

const COLUMNS: &str = "order_id, sale_id, quantity, status, unit_price, amount, admitted_at";

/// The order if it belongs to `user`: MySQL first, then the reservation in Redis.
pub async fn find_for_user(
    db: &MySqlPool,
    redis: &Pool,
    prefix: &str,
    order_id: &str,
    user: &str,
) -> anyhow::Result<Option<OrderView>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, user_id FROM orders WHERE order_id = ?"
    )))
    .bind(order_id)
    .fetch_optional(db)
    .await
    .context("reading order")?;
    if let Some(row) = row {
        let owner: String = row.try_get("user_id")?;
        return Ok((owner == user).then(|| from_row(&row)).transpose()?);
    }
    // Not persisted yet: the order id starts with its sale id.
    let Some(sale_id) = sale_of(order_id) else {
        return Ok(None);
    };
    let keys = SaleKeys::new(prefix, sale_id);
    let reserved: Option<String> = redis
        .hget(&keys.orders, order_id)
        .await
        .context("reading reservation")?;
    let Some((owner, quantity)) = reserved.as_deref().and_then(|v| v.split_once('\n')) else {
        return Ok(None);
    };
    if owner != user {
        return Ok(None);
    }
    let quantity: u32 = quantity.parse().unwrap_or(0);
    let unit_price: Option<u64> = redis
        .hget(&keys.sale, "price")
        .await
        .context("reading sale price")?;
    Ok(Some(OrderView {
        order_id: order_id.to_owned(),
        sale_id,
        quantity,
        status: "reserved".to_owned(),
        unit_price,
        amount: unit_price.and_then(|price| price.checked_mul(u64::from(quantity))),
        admitted_at: None,
    }))
}

/// A page of `user`'s persisted orders, newest first, after `cursor` (`<millis>:<order_id>`).
pub async fn list_for_user(
    db: &MySqlPool,
    user: &str,
    cursor: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> anyhow::Result<Vec<OrderView>> {
    let rows = match cursor {
        Some((at, id)) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM orders WHERE user_id = ? \
             AND (admitted_at < ? OR (admitted_at = ? AND order_id < ?)) \
             ORDER BY admitted_at DESC, order_id DESC LIMIT ?"
        )))
        .bind(user)
        .bind(at.naive_utc())
        .bind(at.naive_utc())
        .bind(id)
        .bind(limit),
        None => sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM orders WHERE user_id = ? \
             ORDER BY admitted_at DESC, order_id DESC LIMIT ?"
        )))
        .bind(user)
        .bind(limit),
    }
    .fetch_all(db)
    .await
    .context("listing orders")?;
    rows.iter()
        .map(from_row)
        .collect::<Result<_, _>>()
        .context("decoding orders")
}

/// The caller's order `order_id`, if it is theirs. An id longer than any order's is no order.
pub async fn order_of(app: &App, user: &str, order_id: &str) -> Result<Option<OrderView>, Failure> {
    if !ids::fits(order_id, ids::ORDER_ID_MAX_LEN) {
        return Ok(None);
    }
    find_for_user(&app.db, &app.redis, app.prefix(), order_id, user)
        .await
        .map_err(Failure::Mysql)
}

/// A page of the caller's persisted orders, newest first, after `cursor`.
pub async fn orders_of(
    app: &App,
    user: &str,
    cursor: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> Result<Vec<OrderView>, Failure> {
    list_for_user(&app.db, user, cursor, limit)
        .await
        .map_err(Failure::Mysql)
}

/// The sale an order id belongs to: the gateway makes order ids `<sale id>-<uuid>`.
pub fn sale_of(order_id: &str) -> Option<u64> {
    order_id
        .split_once('-')
        .and_then(|(sale, _)| sale.parse().ok())
}
