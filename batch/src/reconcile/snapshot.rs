//! Reading one range of users from MySQL in ONE consistent snapshot: ledger sums and balance
//! rows as of the same instant, so a purchase committing meanwhile (ledger row + balance, one
//! transaction) is either wholly in the read or wholly out of it.

use std::collections::BTreeMap;

use anyhow::Context;
use sqlx::{Connection, MySqlPool, Row};

use super::compare::{BalanceRow, LedgerSum};
use super::ranges::Range;

/// One user as MySQL sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredUser {
    /// Their ledger, summed; `None` without ledger rows.
    pub ledger: Option<LedgerSum>,
    /// Their balance row; `None` without one.
    pub row: Option<BalanceRow>,
}

/// Every user of `range` with a balance row or ledger rows, by user id (byte order, so the
/// order of a range's sample is the same on every run).
pub async fn read_range(
    db: &MySqlPool,
    range: &Range,
) -> anyhow::Result<BTreeMap<String, StoredUser>> {
    let mut conn = db.acquire().await.context("acquiring a connection")?;
    // The snapshot holds only under REPEATABLE READ, whatever the server's default is.
    sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await
        .context("choosing the isolation level")?;
    let mut tx = conn
        .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .context("starting a consistent snapshot")?;
    let mut users: BTreeMap<String, StoredUser> = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT user_id, balance, version FROM point_balances \
         WHERE user_id > ? AND user_id <= ? ORDER BY user_id",
    )
    .bind(&range.lo)
    .bind(&range.hi)
    .fetch_all(&mut *tx)
    .await
    .context("reading balance rows")?;
    for row in rows {
        users.entry(row.try_get(0)?).or_default().row = Some(BalanceRow {
            balance: row.try_get(1)?,
            version: row.try_get(2)?,
        });
    }
    // Grouped along the (user_id, entry_id, delta) index: an index-only scan, no sort.
    let rows = sqlx::query(
        "SELECT user_id, CAST(SUM(delta) AS SIGNED), COUNT(*) FROM point_ledger \
         WHERE user_id > ? AND user_id <= ? GROUP BY user_id ORDER BY user_id",
    )
    .bind(&range.lo)
    .bind(&range.hi)
    .fetch_all(&mut *tx)
    .await
    .context("summing ledger rows")?;
    for row in rows {
        let rows: i64 = row.try_get(2)?;
        users.entry(row.try_get(0)?).or_default().ledger = Some(LedgerSum {
            sum: row.try_get(1)?,
            rows: u64::try_from(rows).unwrap_or(0),
        });
    }
    tx.commit().await.context("ending the snapshot")?;
    Ok(users)
}

/// The balance rows of `users` as they are now (outside any snapshot), for the re-check of
/// users whose cache was between two versions.
pub async fn current_rows(
    db: &MySqlPool,
    users: &[String],
) -> anyhow::Result<BTreeMap<String, BalanceRow>> {
    let mut found = BTreeMap::new();
    for chunk in users.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT user_id, balance, version FROM point_balances WHERE user_id IN ({placeholders})"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for user in chunk {
            query = query.bind(user);
        }
        for row in query
            .fetch_all(db)
            .await
            .context("re-reading balance rows")?
        {
            found.insert(
                row.try_get(0)?,
                BalanceRow {
                    balance: row.try_get(1)?,
                    version: row.try_get(2)?,
                },
            );
        }
    }
    Ok(found)
}
