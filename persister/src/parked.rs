//! The `parked_events` table: an event that reached the persister before the record it changes
//! (a coupon's redemption before the coupon, a refund before its use, an order's end before its
//! admission, an admission before the end that gave its units back) waits here, written in
//! its batch's transaction, and is taken back, decided and deleted by the transaction that
//! stores that record. Every statement runs in the caller's transaction, except the reads of
//! the periodic look for what waited too long ([`overdue`], [`oldest`]).

use std::time::Duration;

use sqlx::{MySqlConnection, MySqlPool, QueryBuilder, Row};

/// `waits_kind` of a coupon change waiting for its coupon (`waits_for` = the coupon id).
pub const COUPON: &str = "coupon";

/// `waits_kind` of a refund waiting for its use (`waits_for` = the use's txid).
pub const USE: &str = "use";

/// `waits_kind` of an order's end waiting for its admission (`waits_for` = the order id,
/// `event_key` = the end's event type).
pub const ORDER: &str = "order";

/// `waits_kind` of an admission a guard of MySQL refused (no stock, over the per-user limit),
/// waiting for units to come back to its sale (`waits_for` = the sale id, `event_key` = the
/// order id, `data` = the admission).
pub const STOCK: &str = "stock";

/// `waits_kind` of a refusal decided once its admission's wait was over, waiting for its
/// `order.rejected` to be announced (`waits_for` = the sale id, `event_key` = the order id,
/// `data` = the `order.rejected` event's data). No message of the batch that decided it carries
/// the order, so a replay could not announce it again: the row does, until the broker has it.
pub const ANNOUNCE: &str = "announce";

/// The longest trace id kept with a parked event (the column's width).
const TRACE_CHARS: usize = 255;

/// One parked event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The record it waits for: a coupon id, a use's txid or an order id.
    pub waits_for: String,
    /// Unique per event of that record: the change's seq, the refund's txid, the end's type.
    pub event_key: String,
    /// The envelope type (`coupon.redeemed`, `points.refunded`, ...).
    pub event_type: String,
    /// The event's data, as JSON.
    pub data: String,
    /// The trace id it arrived with.
    pub trace_id: String,
}

/// Parks `events` waiting for records of `waits_kind`. Parking an event again (a replay while
/// it waits) changes nothing.
pub async fn park(
    tx: &mut MySqlConnection,
    waits_kind: &str,
    events: &[Parked],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::new(
        "INSERT INTO parked_events (waits_kind, waits_for, event_key, event_type, data, trace_id) ",
    );
    insert.push_values(events, |mut row, event| {
        row.push_bind(waits_kind)
            .push_bind(&event.waits_for)
            .push_bind(&event.event_key)
            .push_bind(&event.event_type)
            .push_bind(&event.data)
            .push_bind(event.trace_id.chars().take(TRACE_CHARS).collect::<String>());
    });
    insert.push(" ON DUPLICATE KEY UPDATE parked_at = parked_at");
    insert.build().execute(&mut *tx).await?;
    Ok(())
}

/// The events parked for any of `waits_for` (records of `waits_kind`), oldest first.
pub async fn load(
    tx: &mut MySqlConnection,
    waits_kind: &str,
    waits_for: &[&str],
) -> Result<Vec<Parked>, sqlx::Error> {
    if waits_for.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::new(
        "SELECT waits_for, event_key, event_type, data, trace_id FROM parked_events \
         WHERE waits_kind = ",
    );
    query.push_bind(waits_kind).push(" AND waits_for IN (");
    let mut list = query.separated(", ");
    for id in waits_for {
        list.push_bind(*id);
    }
    query.push(") ORDER BY parked_at");
    query
        .build()
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(parked)
        .collect()
}

/// The events parked for any of `waits_for` (records of `waits_kind`), oldest first, each
/// with whether it has waited `wait` or longer (by MySQL's clock, the one `parked_at` is
/// written by, so every persister instance agrees).
pub async fn load_aged(
    tx: &mut MySqlConnection,
    waits_kind: &str,
    waits_for: &[String],
    wait: Duration,
) -> Result<Vec<(Parked, bool)>, sqlx::Error> {
    if waits_for.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = QueryBuilder::new(
        "SELECT waits_for, event_key, event_type, data, trace_id, \
         parked_at <= NOW(3) - INTERVAL ",
    );
    query
        .push_bind(micros(wait))
        .push(" MICROSECOND AS overdue FROM parked_events WHERE waits_kind = ")
        .push_bind(waits_kind)
        .push(" AND waits_for IN (");
    let mut list = query.separated(", ");
    for id in waits_for {
        list.push_bind(id);
    }
    query.push(") ORDER BY parked_at");
    query
        .build()
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            let overdue: i64 = row.try_get("overdue")?;
            Ok((parked(row)?, overdue != 0))
        })
        .collect()
}

/// The records (`waits_for`) that events of `waits_kind` parked `wait` or longer ago wait
/// for. Read without locks: the caller decides them under its own.
pub async fn overdue(
    db: &MySqlPool,
    waits_kind: &str,
    wait: Duration,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT waits_for FROM parked_events WHERE waits_kind = ? \
         AND parked_at <= NOW(3) - INTERVAL ? MICROSECOND",
    )
    .bind(waits_kind)
    .bind(micros(wait))
    .fetch_all(db)
    .await
}

/// Up to `limit` events of `waits_kind`, oldest first, whatever they wait for.
pub async fn oldest(
    db: &MySqlPool,
    waits_kind: &str,
    limit: u32,
) -> Result<Vec<Parked>, sqlx::Error> {
    sqlx::query(
        "SELECT waits_for, event_key, event_type, data, trace_id FROM parked_events \
         WHERE waits_kind = ? ORDER BY parked_at LIMIT ?",
    )
    .bind(waits_kind)
    .bind(limit)
    .fetch_all(db)
    .await?
    .iter()
    .map(parked)
    .collect()
}

/// `wait` in microseconds, as an `INTERVAL` takes it.
fn micros(wait: Duration) -> u64 {
    u64::try_from(wait.as_micros()).unwrap_or(u64::MAX)
}

/// A row of `parked_events` as a parked event.
fn parked(row: &sqlx::mysql::MySqlRow) -> Result<Parked, sqlx::Error> {
    Ok(Parked {
        waits_for: row.try_get("waits_for")?,
        event_key: row.try_get("event_key")?,
        event_type: row.try_get("event_type")?,
        data: row.try_get("data")?,
        trace_id: row.try_get("trace_id")?,
    })
}

/// Deletes the parked events `(waits_for, event_key)` of `waits_kind`: they were decided.
pub async fn release(
    tx: &mut MySqlConnection,
    waits_kind: &str,
    events: &[(String, String)],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut delete = QueryBuilder::new("DELETE FROM parked_events WHERE waits_kind = ");
    delete
        .push_bind(waits_kind)
        .push(" AND (waits_for, event_key) IN (");
    let mut list = delete.separated(", ");
    for (waits_for, event_key) in events {
        list.push("(")
            .push_bind_unseparated(waits_for)
            .push_unseparated(", ")
            .push_bind_unseparated(event_key)
            .push_unseparated(")");
    }
    delete.push(")");
    delete.build().execute(&mut *tx).await?;
    Ok(())
}

/// How many events wait, and how long the oldest has waited (seconds; 0 when none does).
pub async fn waiting(db: &MySqlPool) -> Result<(u64, u64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS events, \
         CAST(COALESCE(TIMESTAMPDIFF(SECOND, MIN(parked_at), CURRENT_TIMESTAMP(3)), 0) AS SIGNED) \
         AS oldest FROM parked_events",
    )
    .fetch_one(db)
    .await?;
    let events: i64 = row.try_get("events")?;
    let oldest: i64 = row.try_get("oldest")?;
    Ok((
        u64::try_from(events).unwrap_or(0),
        u64::try_from(oldest).unwrap_or(0),
    ))
}
