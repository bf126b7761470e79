//! Orders as shoppers see them: from MySQL once persisted, with an end Redis decided that MySQL
//! does not hold yet; from Redis (`reserved`, or already ended) before it reaches MySQL.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use flashgate_events::ids;
use fred::prelude::{HashesInterface, Pool};
use serde::Serialize;
use sqlx::{MySqlPool, Row};

use crate::app::App;
use crate::failure::Failure;
use crate::keys::SaleKeys;
use crate::orders::payment::{self, PaymentView};

/// One order of one shopper.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    /// The order id.
    pub order_id: String,
    /// The sale.
    pub sale_id: u64,
    /// Units.
    pub quantity: u32,
    /// `reserved`, `confirmed`, `paid`, `cancelled`, `expired` or `rejected`.
    pub status: String,
    /// Unit price in minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<u64>,
    /// Amount in minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// When Redis admitted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<DateTime<Utc>>,
    /// Until when it may be paid; past it, an unpaid order expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_by: Option<DateTime<Utc>>,
    /// When it was paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When it expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<DateTime<Utc>>,
    /// Why it ended (or was rejected, or is being refunded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its payment through the provider, once one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentView>,
}

impl OrderView {
    /// Whether its status is final (nothing will change it any more).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "paid" | "cancelled" | "expired" | "rejected"
        )
    }

    /// Shows what Redis's `record` says (a record ahead of MySQL): a payment or a refund in
    /// flight, or an end MySQL does not hold yet.
    fn apply(&mut self, record: &RedisOrder) {
        let at = record.ended_at;
        let reason = (!record.reason.is_empty()).then(|| record.reason.clone());
        match record.state.as_str() {
            "held" => {}
            // While paying, the record's last field is the amount being charged.
            "paying" => self.status = "payment_pending".to_owned(),
            "refunding" => {
                self.status = "refund_pending".to_owned();
                self.reason = reason;
            }
            state => {
                self.status = state.to_owned();
                match state {
                    "paid" => self.paid_at = at,
                    "cancelled" => self.cancelled_at = at,
                    "expired" => self.expired_at = at,
                    _ => {}
                }
                self.reason = reason;
            }
        }
    }
}

/// The amount being charged, while Redis's record says a charge is in flight.
fn paying(record: Option<&RedisOrder>) -> Option<u64> {
    record
        .filter(|record| record.state == "paying")
        .and_then(|record| record.reason.parse().ok())
}

/// Whether Redis's record of an order is ahead of MySQL's `status` for it: an open order
/// MySQL holds `confirmed` that Redis moved on, or a paid one being (or already) refunded.
fn ahead_of(status: &str, record: &RedisOrder) -> bool {
    match status {
        "confirmed" => record.state != "held",
        "paid" => matches!(record.state.as_str(), "refunding" | "cancelled"),
        _ => false,
    }
}

fn time(row: &sqlx::mysql::MySqlRow, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(row
        .try_get::<Option<NaiveDateTime>, _>(column)?
        .map(|t| t.and_utc()))
}

fn from_row(row: &sqlx::mysql::MySqlRow) -> Result<OrderView, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let reason: Option<String> = if status == "rejected" {
        row.try_get("reject_reason")?
    } else {
        row.try_get("close_reason")?
    };
    Ok(OrderView {
        order_id: row.try_get("order_id")?,
        sale_id: row.try_get("sale_id")?,
        quantity: row.try_get("quantity")?,
        status,
        unit_price: Some(row.try_get("unit_price")?),
        amount: Some(row.try_get("amount")?),
        admitted_at: time(row, "admitted_at")?,
        pay_by: time(row, "pay_by")?,
        paid_at: time(row, "paid_at")?,
        cancelled_at: time(row, "cancelled_at")?,
        expired_at: time(row, "expired_at")?,
        reason,
        payment: None,
    })
}

const COLUMNS: &str = "order_id, sale_id, quantity, status, unit_price, amount, admitted_at, \
     pay_by, paid_at, cancelled_at, expired_at, close_reason, reject_reason";

/// An order's record in Redis (`lua/purchase.lua`, `lua/order_close.lua`):
/// `user\nquantity\nadmitted_ms\npay_by_ms\nstate\nat_ms\nreason`; records from before
/// payment windows are `user\nquantity` (held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOrder {
    /// The buyer.
    pub user_id: String,
    /// Units.
    pub quantity: u32,
    /// When Redis admitted it.
    pub admitted_at: Option<DateTime<Utc>>,
    /// Until when it may be paid.
    pub pay_by: Option<DateTime<Utc>>,
    /// `held`, `paying`, `paid`, `refunding`, `cancelled` or `expired`.
    pub state: String,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended; while paying, the amount being charged.
    pub reason: String,
}

fn millis(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}

impl RedisOrder {
    /// Reads a record; `None` when it is not one.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.splitn(7, '\n');
        let user_id = parts.next()?.to_owned();
        let quantity = parts.next()?.parse().ok()?;
        let admitted_at = parts.next().and_then(millis);
        let pay_by = parts.next().and_then(millis);
        let state = parts.next().unwrap_or("held").to_owned();
        let ended_at = parts.next().and_then(millis);
        let reason = parts.next().unwrap_or_default().to_owned();
        Some(Self {
            user_id,
            quantity,
            admitted_at,
            pay_by,
            state,
            ended_at,
            reason,
        })
    }
}

/// The order and its owner: MySQL's row, with what Redis knows ahead of it (an end not
/// persisted yet); or, before the order reaches MySQL, Redis's record (`reserved` while held).
///
/// A Redis failure is the shopper's 503 (`Failure::Unreachable`: a failover, a timeout), a
/// MySQL one is counted as MySQL's.
pub async fn find(
    db: &MySqlPool,
    redis: &Pool,
    prefix: &str,
    order_id: &str,
) -> Result<Option<(String, OrderView)>, Failure> {
    let Some(sale_id) = sale_of(order_id) else {
        return Ok(None);
    };
    let keys = SaleKeys::new(prefix, sale_id);
    // Redis first: its record leaves only after MySQL holds the order's end, so reading MySQL
    // second never misses an order that moved between the two reads.
    let record: Option<String> = redis
        .hget(&keys.orders, order_id)
        .await
        .map_err(Failure::unreachable("order status"))?;
    let record = record.as_deref().and_then(RedisOrder::parse);
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, user_id FROM orders WHERE order_id = ?"
    )))
    .bind(order_id)
    .fetch_optional(db)
    .await
    .context("reading order")
    .map_err(Failure::Mysql)?;
    if let Some(row) = row {
        let owner: String = row.try_get("user_id").map_err(Failure::mysql)?;
        let mut view = from_row(&row).map_err(Failure::mysql)?;
        if let Some(record) = record.as_ref().filter(|r| ahead_of(&view.status, r)) {
            view.apply(record);
        }
        view.payment = payment::of(db, order_id, &view.status, paying(record.as_ref())).await?;
        return Ok(Some((owner, view)));
    }
    let Some(record) = record else {
        return Ok(None);
    };
    let unit_price: Option<u64> = redis
        .hget(&keys.sale, "price")
        .await
        .map_err(Failure::unreachable("order status"))?;
    let mut view = OrderView {
        order_id: order_id.to_owned(),
        sale_id,
        quantity: record.quantity,
        status: "reserved".to_owned(),
        unit_price,
        amount: unit_price.and_then(|price| price.checked_mul(u64::from(record.quantity))),
        admitted_at: record.admitted_at,
        pay_by: record.pay_by,
        paid_at: None,
        cancelled_at: None,
        expired_at: None,
        reason: None,
        payment: None,
    };
    view.apply(&record);
    view.payment = payment::of(db, order_id, &view.status, paying(Some(&record))).await?;
    Ok(Some((record.user_id, view)))
}

/// The order if it belongs to `user`.
pub async fn find_for_user(
    db: &MySqlPool,
    redis: &Pool,
    prefix: &str,
    order_id: &str,
    user: &str,
) -> Result<Option<OrderView>, Failure> {
    Ok(find(db, redis, prefix, order_id)
        .await?
        .and_then(|(owner, view)| (owner == user).then_some(view)))
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
    app.guards
        .mysql
        .call(find_for_user(
            &app.db,
            &app.redis,
            app.prefix(),
            order_id,
            user,
        ))
        .await
}

/// A page of the caller's persisted orders, newest first, after `cursor`.
pub async fn orders_of(
    app: &App,
    user: &str,
    cursor: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> Result<Vec<OrderView>, Failure> {
    app.guards
        .mysql
        .call(async {
            list_for_user(&app.db, user, cursor, limit)
                .await
                .map_err(Failure::Mysql)
        })
        .await
}

/// The sale an order id belongs to: the gateway makes order ids `<sale id>-<uuid>`.
pub fn sale_of(order_id: &str) -> Option<u64> {
    order_id
        .split_once('-')
        .and_then(|(sale, _)| sale.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_in_both_its_forms() {
        let held = RedisOrder::parse("ann\n2\n1700000000000\n1700000600000\nheld\n\n").unwrap();
        assert_eq!((held.user_id.as_str(), held.quantity), ("ann", 2));
        assert_eq!(held.state, "held");
        assert_eq!(
            held.pay_by.map(|t| t.timestamp_millis()),
            Some(1_700_000_600_000)
        );
        assert_eq!(held.ended_at, None);
        let ended = RedisOrder::parse("ann\n2\n1\n2\ncancelled\n3\nthe manager's\nreason").unwrap();
        assert_eq!(ended.state, "cancelled");
        assert_eq!(ended.reason, "the manager's\nreason");
        let old = RedisOrder::parse("bob\n1").unwrap();
        assert_eq!((old.state.as_str(), old.pay_by), ("held", None));
        assert_eq!(RedisOrder::parse("bob"), None);
    }
}
