//! A waiting room in MySQL (`sale_queues`): written with its sale, read when the sale is
//! loaded into Redis or shown, and the draw's public record, written when the draw happens so
//! it outlives the sale's Redis keys.

use anyhow::Context;
use chrono::NaiveDateTime;
use flashgate_events::draw;
use sqlx::{MySqlConnection, MySqlPool, Row};

use crate::queue::spec::{QueuePatch, QueueSpec, StoredQueue};

/// A draw as published: the seed and the tickets in position order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishedDraw {
    /// hex of the 32-byte seed.
    pub seed: String,
    /// hex(SHA-256(seed)), as published before the draw.
    pub commitment: String,
    /// When the draw happened.
    pub drawn_at: chrono::DateTime<chrono::Utc>,
    /// Ticket ids, the first holds position 1.
    pub tickets: Vec<String>,
}

/// Stores the room of a sale being created, in the sale's transaction, with a fresh seed.
pub async fn insert(
    tx: &mut MySqlConnection,
    sale_id: u64,
    spec: &QueueSpec,
) -> anyhow::Result<()> {
    let mut seed = [0_u8; draw::SEED_BYTES];
    getrandom::getrandom(&mut seed).context("drawing the queue's seed")?;
    sqlx::query(
        "INSERT INTO sale_queues (sale_id, mode, opens_at, admit_per_second, max_active, seed, \
         commitment) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(sale_id)
    .bind(&spec.mode)
    .bind(spec.opens_at.naive_utc())
    .bind(spec.admit_per_second)
    .bind(spec.max_active)
    .bind(hex::encode(seed))
    .bind(draw::commitment(&seed))
    .execute(tx)
    .await
    .context("inserting the sale's queue")?;
    Ok(())
}

/// The sale's room, if it has one.
pub async fn find(db: &MySqlPool, sale_id: u64) -> anyhow::Result<Option<StoredQueue>> {
    let row = sqlx::query(
        "SELECT mode, opens_at, admit_per_second, max_active, paused, seed, commitment, drawn_at \
         FROM sale_queues WHERE sale_id = ?",
    )
    .bind(sale_id)
    .fetch_optional(db)
    .await
    .context("reading the sale's queue")?;
    let Some(row) = row else { return Ok(None) };
    let decode = || -> Result<StoredQueue, sqlx::Error> {
        Ok(StoredQueue {
            mode: row.try_get("mode")?,
            opens_at: row.try_get::<NaiveDateTime, _>("opens_at")?.and_utc(),
            admit_per_second: row.try_get("admit_per_second")?,
            max_active: row.try_get("max_active")?,
            paused: row.try_get::<i8, _>("paused")? != 0,
            seed: row.try_get("seed")?,
            commitment: row.try_get("commitment")?,
            drawn_at: row
                .try_get::<Option<NaiveDateTime>, _>("drawn_at")?
                .map(|at| at.and_utc()),
        })
    };
    decode().map(Some).context("decoding the sale's queue")
}

/// The published draw, once it has happened.
pub async fn published(db: &MySqlPool, sale_id: u64) -> anyhow::Result<Option<PublishedDraw>> {
    let row = sqlx::query(
        "SELECT seed, commitment, drawn_at, drawn_tickets FROM sale_queues \
         WHERE sale_id = ? AND drawn_at IS NOT NULL",
    )
    .bind(sale_id)
    .fetch_optional(db)
    .await
    .context("reading the sale's draw")?;
    let Some(row) = row else { return Ok(None) };
    let tickets: String = row.try_get("drawn_tickets").context("decoding the draw")?;
    Ok(Some(PublishedDraw {
        seed: row.try_get("seed").context("decoding the draw")?,
        commitment: row.try_get("commitment").context("decoding the draw")?,
        drawn_at: row
            .try_get::<NaiveDateTime, _>("drawn_at")
            .context("decoding the draw")?
            .and_utc(),
        tickets: tickets
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    }))
}

/// Records the draw of `tickets` (position order) unless one is recorded; the recorded order
/// either way (another gateway may have drawn first: the same seed and tickets give the same
/// order, but the record is what Redis must follow).
pub async fn record_draw(
    db: &MySqlPool,
    sale_id: u64,
    tickets: &[String],
) -> anyhow::Result<Vec<String>> {
    sqlx::query(
        "UPDATE sale_queues SET drawn_at = UTC_TIMESTAMP(3), drawn_tickets = ? \
         WHERE sale_id = ? AND drawn_at IS NULL",
    )
    .bind(tickets.join("\n"))
    .bind(sale_id)
    .execute(db)
    .await
    .context("recording the draw")?;
    Ok(published(db, sale_id)
        .await?
        .context("the draw vanished after it was recorded")?
        .tickets)
}

/// Applies a manager's change; false when the sale has no room.
pub async fn update(db: &MySqlPool, sale_id: u64, patch: &QueuePatch) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE sale_queues SET admit_per_second = COALESCE(?, admit_per_second), \
         paused = COALESCE(?, paused) WHERE sale_id = ?",
    )
    .bind(patch.admit_per_second)
    .bind(patch.paused)
    .bind(sale_id)
    .execute(db)
    .await
    .context("updating the sale's queue")?;
    if updated.rows_affected() > 0 {
        return Ok(true);
    }
    Ok(find(db, sale_id).await?.is_some())
}
