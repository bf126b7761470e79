//! Repairing one drifting sale: MySQL read again (the persister may have committed since the
//! check), then Redis's counters set by the compare-and-set script, logged with before and
//! after; a repair that gave units back is announced so no gateway stays "sold out".

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::MySqlPool;

use super::judge::{Counters, Look, Unfixable};
use super::mysql;
use super::redis::{StockCounters, StockRepair};
use super::report::{Outcome, RedisCounters};
use crate::retry::retry;

/// Longest wait of the test hook for its file to be removed.
const HOOK_WAIT: Duration = Duration::from_secs(60);

/// Sets the counters of `look`'s sale to `target`, only if neither MySQL nor Redis moved since
/// `look` was read.
pub async fn repair(
    db: &MySqlPool,
    counters: &StockCounters,
    look: &Look,
    target: Counters,
    pause_at: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let sale_id = look.mysql.sale_id;
    if let Some(path) = pause_at {
        wait_at(path, sale_id).await?;
    }
    let ids = [sale_id];
    let now = retry("reading a sale again", || mysql::sales_by_id(db, &ids)).await?;
    if now.first() != Some(&look.mysql) {
        tracing::warn!(sale_id, before = ?look.mysql, now = ?now.first(), "MySQL changed since the check; sale left alone");
        return Ok(Outcome::ChangedWhileReading);
    }
    // Safe to retry: a call whose reply was lost left the target values, which a second call
    // answers `already`.
    let done = retry("repairing a sale's counters", || {
        counters.repair(sale_id, &look.redis, target)
    })
    .await?;
    let before = RedisCounters::from(&look.redis);
    match done {
        StockRepair::Repaired | StockRepair::Already => {
            tracing::warn!(
                sale_id,
                ?before,
                after = ?target,
                already = done == StockRepair::Already,
                "stock counters repaired from MySQL"
            );
            if before.stock.is_none_or(|stock| target.stock > stock) {
                retry("announcing restock", || counters.announce_restock(sale_id)).await?;
            }
            Ok(Outcome::Repaired {
                before,
                after: target,
            })
        }
        StockRepair::OpenOrders(units) => {
            tracing::warn!(
                sale_id,
                ?before,
                open_order_units = units,
                confirmed_units = look.mysql.confirmed,
                "Redis's open orders disagree with MySQL's confirmed orders; sale left alone"
            );
            Ok(Outcome::Unfixable(Unfixable::OpenOrders {
                redis: units,
                mysql: look.mysql.confirmed,
            }))
        }
        moved => {
            tracing::warn!(sale_id, ?before, now = ?moved, "Redis changed since the check; sale left alone");
            Ok(Outcome::ChangedWhileReading)
        }
    }
}

/// The test hook: writes `sale_id` into `path`, then waits until the file is removed.
async fn wait_at(path: &Path, sale_id: u64) -> anyhow::Result<()> {
    std::fs::write(path, sale_id.to_string())
        .with_context(|| format!("writing the hook file {}", path.display()))?;
    let until = Instant::now() + HOOK_WAIT;
    while path.exists() {
        anyhow::ensure!(
            Instant::now() < until,
            "the hook file {} was not removed",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
