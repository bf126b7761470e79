//! The producer of work: walks user ids in key order with keyset pagination and hands ranges
//! `(lo, hi]` to the workers over a bounded channel.
//!
//! A boundary is the smallest of: the last user id of the next `page` balance rows, the user id
//! of the next `page`-th ledger row, and the start of a range a resumed run already has. So a
//! range holds at most `page` balance rows and about `page` ledger rows (plus the rest of its
//! last user's), whatever either table holds; users with ledger rows but no balance row are
//! covered too. Every comparison runs in SQL, under the column's collation.

use std::collections::VecDeque;

use anyhow::Context;
use sqlx::MySqlPool;
use tokio::sync::mpsc;

use super::checkpoint::RangeRecord;
use super::report::RangeReport;
use super::summary::Stats;

/// A range of user ids, `lo < user_id <= hi` (`lo` empty: from the start).
#[derive(Debug, Clone)]
pub struct Range {
    /// Position in key order within this run.
    pub seq: u64,
    /// Exclusive lower bound.
    pub lo: String,
    /// Inclusive upper bound.
    pub hi: String,
    /// What an interrupted run recorded for exactly this range, if anything.
    pub prior: Option<Prior>,
}

/// What an interrupted run recorded for a range.
#[derive(Debug, Clone)]
pub enum Prior {
    /// Finished: its statistics are taken as they are.
    Done(Stats),
    /// Checked, repairs possibly half-applied: it is checked and repaired again, and reports
    /// what it found the first time.
    Checked(Stats),
}

/// The next boundary after `after`, capped at `cap`; `None` when neither table has a user
/// after `after` (and there is no cap).
pub async fn next_boundary(
    db: &MySqlPool,
    after: &str,
    page: usize,
    cap: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let page = i64::try_from(page).unwrap_or(i64::MAX);
    sqlx::query_scalar(
        "SELECT LEAST(COALESCE(b.m, l.m, c.m), COALESCE(l.m, b.m, c.m), COALESCE(c.m, b.m, l.m)) \
         FROM (SELECT MAX(user_id) AS m FROM (SELECT user_id FROM point_balances \
               WHERE user_id > ? ORDER BY user_id LIMIT ?) AS x) AS b \
         CROSS JOIN (SELECT MAX(user_id) AS m FROM (SELECT user_id FROM point_ledger \
               WHERE user_id > ? ORDER BY user_id LIMIT ?) AS y) AS l \
         CROSS JOIN (SELECT CAST(? AS CHAR) AS m) AS c",
    )
    .bind(after)
    .bind(page)
    .bind(after)
    .bind(page)
    .bind(cap)
    .fetch_one(db)
    .await
    .context("finding the next range boundary")
}

/// Walks from `start` to the last user, sending ranges to `work` (a bounded channel, so the
/// walk stays at most its capacity ahead of the workers). Ranges an interrupted run recorded
/// (`ahead`, in key order) are sent as they were, with what it recorded, and announced to the
/// aggregator on `reports`. Returns the number
/// of ranges sent; stops early when the workers are gone.
pub async fn produce(
    db: MySqlPool,
    start: String,
    page: usize,
    ahead: Vec<RangeRecord>,
    work: mpsc::Sender<Range>,
    reports: mpsc::Sender<RangeReport>,
) -> anyhow::Result<u64> {
    let mut ahead = VecDeque::from(ahead);
    let mut cur = start;
    let mut seq = 0;
    loop {
        let range = if ahead.front().is_some_and(|e| e.lo == cur) {
            let entry = ahead.pop_front().expect("front exists");
            // Told before the range goes out, so it arrives before the range's own report.
            let resent = RangeReport::Resent {
                seq,
                entry: entry.clone(),
            };
            if reports.send(resent).await.is_err() {
                break;
            }
            let prior = if entry.done {
                Prior::Done(entry.stats)
            } else {
                Prior::Checked(entry.stats)
            };
            Range {
                seq,
                lo: entry.lo,
                hi: entry.hi,
                prior: Some(prior),
            }
        } else {
            let cap = ahead.front().map(|e| e.lo.as_str());
            let Some(hi) = next_boundary(&db, &cur, page, cap).await? else {
                break;
            };
            Range {
                seq,
                lo: cur,
                hi,
                prior: None,
            }
        };
        cur = range.hi.clone();
        seq += 1;
        if work.send(range).await.is_err() {
            break;
        }
    }
    Ok(seq)
}
