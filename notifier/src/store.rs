//! The notifier's MySQL part: the addresses of `user_contacts`, and `notification_deliveries`
//! (migration 0007), one row per (event id, channel, target) written before the event's offset
//! is committed and before anything is sent, and leased (migration 0011) by the instance
//! that sends it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{MySql, MySqlPool, Row, Transaction};

/// A delivery to make: its row, and everything needed to send or dead-letter it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The row's id.
    pub id: u64,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `webhook`, `email` or `slack`.
    pub channel: String,
    /// The endpoint's name, or the email address.
    pub target: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Where the event came from (for its dead letter).
    pub source_topic: String,
    /// Its partition there.
    pub source_partition: i32,
    /// Its offset there.
    pub source_offset: i64,
    /// The message's key.
    pub key: Option<Vec<u8>>,
    /// The event's envelope as received.
    pub payload: Vec<u8>,
}

/// What recording a delivery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new row: deliver it.
    New(u64),
    /// A dead row revived by a dead-letter replay: deliver it again, once.
    Revived(u64),
    /// The row was there (sent, dead, or pending and resumed by the sweep): nothing to do.
    Found,
}

/// The address `user_id` gets email at, if any.
pub async fn contact(
    tx: &mut Transaction<'_, MySql>,
    user_id: &str,
) -> sqlx::Result<Option<String>> {
    let email: Option<Option<String>> =
        sqlx::query_scalar("SELECT email FROM user_contacts WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(email
        .flatten()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty()))
}

/// Records `delivery` (its `id` and `attempts` ignored) unless its (event, channel, target)
/// has a row already; a `dead` row is revived when `replay` names a replay it has not seen.
pub async fn record(
    tx: &mut Transaction<'_, MySql>,
    delivery: &Delivery,
    replay: Option<&str>,
) -> sqlx::Result<Recorded> {
    let inserted = sqlx::query(
        "INSERT IGNORE INTO notification_deliveries \
         (event_id, channel, target, event_type, source_topic, source_partition, source_offset, \
          message_key, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&delivery.event_id)
    .bind(&delivery.channel)
    .bind(&delivery.target)
    .bind(&delivery.event_type)
    .bind(&delivery.source_topic)
    .bind(delivery.source_partition)
    .bind(delivery.source_offset)
    .bind(delivery.key.as_deref())
    .bind(&delivery.payload)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Recorded::New(inserted.last_insert_id()));
    }
    let Some(replay) = replay else {
        return Ok(Recorded::Found);
    };
    let row = sqlx::query(
        "SELECT id, status, replayed_by FROM notification_deliveries \
         WHERE event_id = ? AND channel = ? AND target = ? FOR UPDATE",
    )
    .bind(&delivery.event_id)
    .bind(&delivery.channel)
    .bind(&delivery.target)
    .fetch_one(&mut **tx)
    .await?;
    let (id, status, replayed_by): (u64, String, Option<String>) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if status != "dead" || replayed_by.as_deref() == Some(replay) {
        return Ok(Recorded::Found);
    }
    sqlx::query(
        // A revived row is free for any instance at once: the lease of whoever let it die
        // (perhaps an instance gone since) is released.
        "UPDATE notification_deliveries SET status = 'pending', attempts = 0, \
         next_attempt_at = CURRENT_TIMESTAMP(3), replayed_by = ?, owner = NULL, \
         leased_until = NULL WHERE id = ?",
    )
    .bind(replay)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(Recorded::Revived(id))
}

/// Up to `limit` pending deliveries of `channel` (and `target`, when given) due now, the
/// oldest first.
pub async fn due(
    db: &MySqlPool,
    channel: &str,
    target: Option<&str>,
    limit: usize,
) -> sqlx::Result<Vec<Delivery>> {
    let rows = sqlx::query(
        "SELECT id, event_id, event_type, channel, target, attempts, source_topic, \
         source_partition, source_offset, message_key, payload FROM notification_deliveries \
         WHERE status = 'pending' AND next_attempt_at <= CURRENT_TIMESTAMP(3) \
         AND channel = ? AND (? IS NULL OR target = ?) ORDER BY next_attempt_at LIMIT ?",
    )
    .bind(channel)
    .bind(target)
    .bind(target)
    .bind(limit as u64)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Delivery {
                id: row.try_get(0)?,
                event_id: row.try_get(1)?,
                event_type: row.try_get(2)?,
                channel: row.try_get(3)?,
                target: row.try_get(4)?,
                attempts: row.try_get(5)?,
                source_topic: row.try_get(6)?,
                source_partition: row.try_get(7)?,
                source_offset: row.try_get(8)?,
                key: row.try_get(9)?,
                payload: row.try_get(10)?,
            })
        })
        .collect()
}

/// Takes (or renews) the lease of delivery `id` for `owner` until `lease` from now, if the
/// row is still pending and its lease is free, lapsed or `owner`'s already (migration 0011);
/// `false`: it is sent, dead, or another instance holds it — leave it alone. A row read a
/// moment ago by the sweep may have been sent meanwhile by the worker that had it.
pub async fn lease(db: &MySqlPool, id: u64, owner: &str, lease: Duration) -> sqlx::Result<bool> {
    let taken = sqlx::query(
        "UPDATE notification_deliveries SET owner = ?, \
         leased_until = CURRENT_TIMESTAMP(3) + INTERVAL ? MICROSECOND \
         WHERE id = ? AND status = 'pending' \
         AND (leased_until IS NULL OR leased_until < CURRENT_TIMESTAMP(3) OR owner = ?)",
    )
    .bind(owner)
    .bind(micros(lease))
    .bind(id)
    .bind(owner)
    .execute(db)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// `duration` in microseconds, for an `INTERVAL`.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The delivery went out: final.
pub async fn sent(db: &MySqlPool, id: u64, attempts: u32) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notification_deliveries SET status = 'sent', attempts = ?, \
         sent_at = CURRENT_TIMESTAMP(3), last_error = NULL WHERE id = ? AND status = 'pending'",
    )
    .bind(attempts)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// An attempt failed; the next one is due at `next_at`, and the lease is kept until `lease`
/// after it (the instance waiting to make it keeps the row; if it dies, another takes it).
pub async fn failed(
    db: &MySqlPool,
    id: u64,
    attempts: u32,
    error: &str,
    next_at: DateTime<Utc>,
    lease: Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notification_deliveries SET attempts = ?, last_error = ?, next_attempt_at = ?, \
         leased_until = ? + INTERVAL ? MICROSECOND WHERE id = ? AND status = 'pending'",
    )
    .bind(attempts)
    .bind(clip(error))
    .bind(next_at.naive_utc())
    .bind(next_at.naive_utc())
    .bind(micros(lease))
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// The last attempt failed and the delivery is in the dead-letter topic: final (until a
/// replay revives it).
pub async fn dead(db: &MySqlPool, id: u64, attempts: u32, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notification_deliveries SET status = 'dead', attempts = ?, last_error = ? \
         WHERE id = ? AND status = 'pending'",
    )
    .bind(attempts)
    .bind(clip(reason))
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Deliveries not yet final (any endpoint), and the age of the oldest due one in seconds.
pub async fn backlog(db: &MySqlPool) -> sqlx::Result<(u64, u64)> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(TIMESTAMPDIFF(SECOND, MIN(created_at), \
         CURRENT_TIMESTAMP(3)), 0) FROM notification_deliveries WHERE status = 'pending'",
    )
    .fetch_one(db)
    .await?;
    let count: i64 = row.try_get(0)?;
    let oldest: i64 = row.try_get(1)?;
    Ok((count.max(0) as u64, oldest.max(0) as u64))
}

/// `text` cut to the column's 500 characters.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(500) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
