//! A reconciliation worker: takes ranges from the producer, checks each in one snapshot,
//! re-checks users caught between two versions, repairs (with `--fix`), and reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::MySqlPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::caches::{CacheAuditor, CacheRepair};
use super::compare::{BalanceRow, CacheVerdict, judge_balance, judge_cache};
use super::ranges::{Prior, Range};
use super::repair::{BalanceRepair, repair_balance};
use super::report::RangeReport;
use super::snapshot::{StoredUser, current_rows, read_range};
use super::summary::Stats;
use crate::retry::retry;

/// Waits before re-checking users whose cache was between two versions: bounded, growing.
const RECHECK_DELAYS_MS: [u64; 5] = [50, 100, 200, 400, 800];

/// A repair to make once a range is judged.
enum Repair {
    /// The balance row differs from the ledger (and maybe the cache from the row as well).
    Balance { user: String, cache_too: bool },
    /// Only the cache differs from the row it reflects.
    Cache { user: String, row: BalanceRow },
}

/// One worker's handles and options.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Ranges are read from it in one snapshot each, and balance rows repaired in it.
    pub db: MySqlPool,
    /// The caches judged against the balance rows, and repaired with them.
    pub caches: CacheAuditor,
    /// Repair what is found.
    pub fix: bool,
    /// Pause after each range, to spare a busy database.
    pub pause: Duration,
    /// A test's fault point (`Options::abort_after_repairs`): repairs left, across the
    /// workers, before the process aborts.
    #[doc(hidden)]
    pub abort_after: Option<Arc<AtomicU64>>,
}

impl Worker {
    /// Works until the producer is done, reporting every range; a failure is reported too.
    pub async fn run(
        self,
        work: Arc<Mutex<mpsc::Receiver<Range>>>,
        reports: mpsc::Sender<RangeReport>,
    ) {
        loop {
            let Some(range) = work.lock().await.recv().await else {
                return;
            };
            let report = match self.range(&range, &reports).await {
                Ok(stats) => RangeReport::Done {
                    seq: range.seq,
                    range: (range.lo, range.hi),
                    stats,
                },
                Err(err) => RangeReport::Failed(err),
            };
            let failed = matches!(report, RangeReport::Failed(_));
            if reports.send(report).await.is_err() || failed {
                return;
            }
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
        }
    }

    async fn range(
        &self,
        range: &Range,
        reports: &mpsc::Sender<RangeReport>,
    ) -> anyhow::Result<Stats> {
        match &range.prior {
            None => self.check(range, Some(reports)).await,
            Some(Prior::Done(stats)) => Ok(stats.clone()),
            Some(Prior::Checked(prior)) => {
                // Repairs of the first attempt may be half applied: check and repair again,
                // but report what the first attempt found, so a resumed run adds up the same.
                let again = self.check(range, None).await?;
                let left = again.mismatches.count().saturating_sub(again.fixed);
                let mut stats = prior.clone();
                stats.fixed = prior.mismatches.count().saturating_sub(left);
                stats.unfixable = again.unfixable;
                Ok(stats)
            }
        }
    }

    /// Checks a range; with `--fix`, announces the findings (when `announce` is given) and
    /// repairs them.
    async fn check(
        &self,
        range: &Range,
        announce: Option<&mpsc::Sender<RangeReport>>,
    ) -> anyhow::Result<Stats> {
        let started = std::time::Instant::now();
        let users = retry("reading a range", || read_range(&self.db, range)).await?;
        let read = started.elapsed();
        let caches = retry("reading caches", || {
            self.caches.read(users.keys().map(String::as_str))
        })
        .await?;
        tracing::debug!(
            seq = range.seq,
            users = users.len(),
            mysql_ms = read.as_millis() as u64,
            redis_ms = (started.elapsed() - read).as_millis() as u64,
            "range read"
        );
        let mut stats = Stats {
            users_checked: users.len() as u64,
            ledger_rows: users
                .values()
                .filter_map(|u| u.ledger)
                .map(|l| l.rows)
                .sum(),
            ..Stats::default()
        };
        let mut repairs = Vec::new();
        let mut in_flight = Vec::new();
        for (user, stored) in &users {
            let balance = judge_balance(user, stored.ledger, stored.row);
            let cache = judge_cache(user, stored.ledger, stored.row, caches.get(user).copied());
            if let Some(found) = balance {
                stats.record(found);
                repairs.push(Repair::Balance {
                    user: user.clone(),
                    cache_too: matches!(cache, CacheVerdict::Drift(_)),
                });
            }
            match cache {
                CacheVerdict::Drift(found) => {
                    stats.record(found);
                    if !matches!(repairs.last(), Some(Repair::Balance { user: u, .. }) if u == user)
                    {
                        repairs.push(Repair::Cache {
                            user: user.clone(),
                            row: stored.row.unwrap_or(BalanceRow {
                                balance: 0,
                                version: 0,
                            }),
                        });
                    }
                }
                CacheVerdict::InFlight => in_flight.push(user.clone()),
                CacheVerdict::Absent | CacheVerdict::Consistent => {}
            }
        }
        self.recheck(in_flight, &users, &mut stats, &mut repairs)
            .await?;
        if !self.fix || repairs.is_empty() {
            return Ok(stats);
        }
        if let Some(reports) = announce {
            let (saved, wait) = oneshot::channel();
            let checked = RangeReport::Checked {
                seq: range.seq,
                range: (range.lo.clone(), range.hi.clone()),
                stats: stats.clone(),
                saved,
            };
            anyhow::ensure!(reports.send(checked).await.is_ok(), "the run is stopping");
            anyhow::ensure!(wait.await.is_ok(), "the run is stopping");
        }
        for repair in repairs {
            self.repair(repair, &mut stats).await?;
            if let Some(left) = &self.abort_after
                && left.fetch_sub(1, Ordering::SeqCst) == 1
            {
                std::process::abort();
            }
        }
        Ok(stats)
    }

    /// Looks again, a little later each time, at users whose cache reflected another version
    /// than the snapshot's row; those still in flight after the last look are unsettled.
    async fn recheck(
        &self,
        mut users: Vec<String>,
        stored: &BTreeMap<String, StoredUser>,
        stats: &mut Stats,
        repairs: &mut Vec<Repair>,
    ) -> anyhow::Result<()> {
        for delay in RECHECK_DELAYS_MS {
            if users.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let rows = retry("re-reading rows", || current_rows(&self.db, &users)).await?;
            let caches = retry("re-reading caches", || {
                self.caches.read(users.iter().map(String::as_str))
            })
            .await?;
            users.retain(|user| {
                let ledger = stored.get(user).and_then(|s| s.ledger);
                let row = rows.get(user).copied();
                match judge_cache(user, ledger, row, caches.get(user).copied()) {
                    CacheVerdict::InFlight => true,
                    CacheVerdict::Drift(found) => {
                        stats.record(found);
                        repairs.push(Repair::Cache {
                            user: user.clone(),
                            row: row.unwrap_or(BalanceRow {
                                balance: 0,
                                version: 0,
                            }),
                        });
                        false
                    }
                    CacheVerdict::Absent | CacheVerdict::Consistent => false,
                }
            });
        }
        for user in &users {
            stats.record_unsettled(user);
        }
        Ok(())
    }

    async fn repair(&self, repair: Repair, stats: &mut Stats) -> anyhow::Result<()> {
        let (user, cache_too, expected, target) = match repair {
            Repair::Balance { user, cache_too } => {
                match retry("repairing a balance", || repair_balance(&self.db, &user)).await? {
                    BalanceRepair::NegativeLedger => {
                        stats.unfixable += 1 + u64::from(cache_too);
                        return Ok(());
                    }
                    BalanceRepair::AlreadyRight(row) => {
                        stats.fixed += 1;
                        (user, cache_too, row.version, row)
                    }
                    BalanceRepair::Repaired { before, after } => {
                        stats.fixed += 1;
                        (user, cache_too, before.version, after)
                    }
                }
            }
            Repair::Cache { user, row } => (user, true, row.version, row),
        };
        // The cache follows the row: if it still reflects the version it was judged against,
        // it is set to the row's balance (minus what is pending) at the row's version.
        let outcome = retry("repairing a cache", || {
            self.caches
                .repair(&user, expected, target.balance, target.version)
        })
        .await?;
        match (cache_too, outcome) {
            (true, CacheRepair::Done) => stats.fixed += 1,
            (true, CacheRepair::Moved) => stats.record_unsettled(&user),
            (false, _) => {}
        }
        Ok(())
    }
}
