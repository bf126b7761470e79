//! Repairing one user's balance row under its row lock: the ledger is summed again inside the
//! locking transaction and the row set to that sum only if it still differs. An absolute,
//! conditional set, so a repeated or resumed run never applies a repair twice.
//!
//! Why this is safe while the persister writes: the persister locks the same row to move it
//! (`balance = balance + delta`), so no ledger row of this user commits between our sum and our
//! update; a ledger row it inserted but has not committed is outside our sum, and its own
//! relative update of the row, after our commit, adds it.

use anyhow::Context;
use sqlx::{MySqlPool, Row};

use super::compare::BalanceRow;

/// What the repair of a balance row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceRepair {
    /// The row was set (or created) from the ledger; `before` is what it was (version 0 and
    /// balance 0 for a missing row), `after` what it is now.
    Repaired {
        /// What it held: the cache is repaired only if it still reflects this version.
        before: BalanceRow,
        /// What it holds now, which the cache is set to.
        after: BalanceRow,
    },
    /// The row already equals its ledger (an earlier run repaired it).
    AlreadyRight(BalanceRow),
    /// The ledger sums to less than zero, which the `balance >= 0` check refuses: a person
    /// has to look at this user.
    NegativeLedger,
}

/// Sets `user`'s balance row to the sum of their ledger, under the row lock.
pub async fn repair_balance(db: &MySqlPool, user: &str) -> anyhow::Result<BalanceRepair> {
    let mut tx = db.begin().await.context("starting a repair")?;
    let row =
        sqlx::query("SELECT balance, version FROM point_balances WHERE user_id = ? FOR UPDATE")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .context("locking the balance row")?
            .map(|row| -> Result<_, sqlx::Error> {
                Ok(BalanceRow {
                    balance: row.try_get(0)?,
                    version: row.try_get(1)?,
                })
            })
            .transpose()?;
    let (sum, rows): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(delta), 0) AS SIGNED), COUNT(*) FROM point_ledger \
         WHERE user_id = ?",
    )
    .bind(user)
    .fetch_one(&mut *tx)
    .await
    .context("summing the ledger under the lock")?;
    let outcome = match row {
        Some(row) if row.balance == sum => BalanceRepair::AlreadyRight(row),
        None if rows == 0 => BalanceRepair::AlreadyRight(BalanceRow {
            balance: 0,
            version: 0,
        }),
        _ if sum < 0 => BalanceRepair::NegativeLedger,
        Some(before) => {
            sqlx::query(
                "UPDATE point_balances SET balance = ?, version = version + 1 WHERE user_id = ?",
            )
            .bind(sum)
            .bind(user)
            .execute(&mut *tx)
            .await
            .context("repairing the balance row")?;
            BalanceRepair::Repaired {
                before,
                after: BalanceRow {
                    balance: sum,
                    version: before.version + 1,
                },
            }
        }
        None => {
            sqlx::query("INSERT INTO point_balances (user_id, balance, version) VALUES (?, ?, 1)")
                .bind(user)
                .bind(sum)
                .execute(&mut *tx)
                .await
                .context("creating the missing balance row")?;
            BalanceRepair::Repaired {
                before: BalanceRow {
                    balance: 0,
                    version: 0,
                },
                after: BalanceRow {
                    balance: sum,
                    version: 1,
                },
            }
        }
    };
    tx.commit().await.context("committing a repair")?;
    Ok(outcome)
}
