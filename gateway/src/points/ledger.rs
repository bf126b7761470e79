//! The point ledger in MySQL: one use as recorded, and a shopper's history.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use sqlx::{MySqlPool, Row};

use crate::app::App;
use crate::failure::Failure;

/// A use as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUse {
    /// Points it took (0 when the database refused it).
    pub amount: u64,
    /// The order.
    pub order_id: String,
    /// Whether its refund is in the ledger too.
    pub refunded: bool,
}

/// The use `use_txid` of `user_id` from the ledger, if there is one.
pub async fn stored_use(
    db: &MySqlPool,
    user_id: &str,
    use_txid: &str,
    refund_txid: &str,
) -> anyhow::Result<Option<StoredUse>> {
    let rows = sqlx::query(
        "SELECT txid, delta, reference FROM point_ledger WHERE user_id = ? AND txid IN (?, ?)",
    )
    .bind(user_id)
    .bind(use_txid)
    .bind(refund_txid)
    .fetch_all(db)
    .await
    .context("reading a use from the ledger")?;
    let mut found: Option<StoredUse> = None;
    let mut refunded = false;
    for row in rows {
        let txid: String = row.try_get("txid")?;
        if txid == use_txid {
            let delta: i64 = row.try_get("delta")?;
            found = Some(StoredUse {
                amount: delta.unsigned_abs(),
                order_id: row
                    .try_get::<Option<String>, _>("reference")?
                    .unwrap_or_default(),
                refunded: false,
            });
        } else {
            refunded = true;
        }
    }
    Ok(found.map(|found| StoredUse { refunded, ..found }))
}

/// One row of the ledger as the shopper sees it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// Position in the ledger (the cursor of the next page).
    pub entry_id: u64,
    /// The change's txid.
    pub txid: String,
    /// Points: positive earned or given back, negative spent, 0 when refused.
    pub delta: i64,
    /// `earn`, `use`, `refund`, `rejected` or `adjust`.
    pub reason: String,
    /// The order, or the use a refund gives back.
    pub reference: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// The caller's ledger rows, newest first, before `before` (an `entry_id`) when given.
pub async fn history_of(
    app: &App,
    user_id: &str,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<HistoryEntry>, Failure> {
    app.guards
        .mysql
        .call(async {
            history(&app.db, user_id, before, limit)
                .await
                .map_err(Failure::Mysql)
        })
        .await
}

/// `user_id`'s ledger rows, newest first, before `before` (an `entry_id`) when given.
pub async fn history(
    db: &MySqlPool,
    user_id: &str,
    before: Option<u64>,
    limit: u32,
) -> anyhow::Result<Vec<HistoryEntry>> {
    let rows = sqlx::query(
        "SELECT entry_id, txid, delta, reason, reference, created_at FROM point_ledger \
         WHERE user_id = ? AND entry_id < ? ORDER BY entry_id DESC LIMIT ?",
    )
    .bind(user_id)
    .bind(before.unwrap_or(u64::MAX))
    .bind(limit)
    .fetch_all(db)
    .await
    .context("reading the point ledger")?;
    rows.iter()
        .map(|row| {
            let created: NaiveDateTime = row.try_get("created_at")?;
            Ok(HistoryEntry {
                entry_id: row.try_get("entry_id")?,
                txid: row.try_get("txid")?,
                delta: row.try_get("delta")?,
                reason: row.try_get("reason")?,
                reference: row.try_get("reference")?,
                created_at: created.and_utc(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding the point ledger")
}
