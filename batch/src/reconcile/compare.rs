//! The judgement of one user: what MySQL's ledger, its balance row and the Redis cache say,
//! and which of them disagree. Pure logic, no I/O.

use super::summary::{Mismatch, MismatchKind};

/// A user's ledger, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerSum {
    /// Sum of `delta`: the balance the user should have.
    pub sum: i64,
    /// How many ledger rows were summed, for the summary's count.
    pub rows: u64,
}

/// A user's `point_balances` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceRow {
    /// The stored balance.
    pub balance: i64,
    /// Bumped by every change.
    pub version: u64,
}

/// A user's Redis cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheEntry {
    /// Spendable now.
    pub balance: i64,
    /// The balance row version it reflects.
    pub version: u64,
    /// Spent in Redis, not yet persisted.
    pub pending: i64,
}

/// What the cache of a user says next to the balance row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheVerdict {
    /// No entry (it is rebuilt from MySQL on the next read): nothing to judge.
    Absent,
    /// `balance + pending` equals the row it reflects.
    Consistent,
    /// It reflects the row's version, yet its `balance + pending` differs.
    Drift(Mismatch),
    /// It reflects another version: an update is between MySQL and Redis. Look again later.
    InFlight,
}

/// Compares the balance row with the ledger. A user with ledger rows and no balance row is
/// drift too; a user with neither is not a user.
pub fn judge_balance(
    user_id: &str,
    ledger: Option<LedgerSum>,
    row: Option<BalanceRow>,
) -> Option<Mismatch> {
    let truth = ledger.map_or(0, |l| l.sum);
    let (kind, stored) = match (row, ledger) {
        (Some(row), _) => (MismatchKind::Balance, row.balance),
        (None, Some(_)) => (MismatchKind::MissingBalance, 0),
        (None, None) => return None,
    };
    (row.is_none() || stored != truth).then(|| Mismatch {
        user_id: user_id.to_owned(),
        kind,
        ledger: truth,
        balance: stored,
        cache: None,
        drift: stored.abs_diff(truth),
    })
}

/// Compares the cache with the balance row it claims to reflect (a missing row reads as
/// balance 0, version 0, which is what the gateway caches for a user without points).
pub fn judge_cache(
    user_id: &str,
    ledger: Option<LedgerSum>,
    row: Option<BalanceRow>,
    cache: Option<CacheEntry>,
) -> CacheVerdict {
    let Some(cache) = cache else {
        return CacheVerdict::Absent;
    };
    let row = row.unwrap_or(BalanceRow {
        balance: 0,
        version: 0,
    });
    if cache.version != row.version {
        return CacheVerdict::InFlight;
    }
    let cached = cache.balance.saturating_add(cache.pending);
    if cached == row.balance {
        return CacheVerdict::Consistent;
    }
    CacheVerdict::Drift(Mismatch {
        user_id: user_id.to_owned(),
        kind: MismatchKind::Cache,
        ledger: ledger.map_or(0, |l| l.sum),
        balance: row.balance,
        cache: Some(cached),
        drift: cached.abs_diff(row.balance),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEDGER: Option<LedgerSum> = Some(LedgerSum { sum: 70, rows: 3 });

    fn row(balance: i64, version: u64) -> Option<BalanceRow> {
        Some(BalanceRow { balance, version })
    }

    fn cache(balance: i64, version: u64, pending: i64) -> Option<CacheEntry> {
        Some(CacheEntry {
            balance,
            version,
            pending,
        })
    }

    #[test]
    fn a_balance_equal_to_its_ledger_is_no_mismatch() {
        assert_eq!(judge_balance("u", LEDGER, row(70, 3)), None);
        assert_eq!(judge_balance("u", None, None), None);
    }

    #[test]
    fn a_balance_off_its_ledger_is_drift_by_the_difference() {
        let found = judge_balance("u", LEDGER, row(95, 3)).expect("drift");
        assert_eq!((found.kind, found.drift), (MismatchKind::Balance, 25));
        let found = judge_balance("u", None, row(5, 1)).expect("row without ledger");
        assert_eq!((found.ledger, found.drift), (0, 5));
    }

    #[test]
    fn ledger_rows_without_a_balance_row_are_drift() {
        let found = judge_balance("u", LEDGER, None).expect("missing row");
        assert_eq!(
            (found.kind, found.drift),
            (MismatchKind::MissingBalance, 70)
        );
    }

    #[test]
    fn a_cache_counts_its_pending_spends_against_the_row() {
        assert_eq!(
            judge_cache("u", LEDGER, row(70, 3), cache(50, 3, 20)),
            CacheVerdict::Consistent
        );
        let CacheVerdict::Drift(found) = judge_cache("u", LEDGER, row(70, 3), cache(60, 3, 20))
        else {
            panic!("expected drift");
        };
        assert_eq!((found.cache, found.drift), (Some(80), 10));
    }

    #[test]
    fn a_cache_of_another_version_is_in_flight_and_a_missing_one_is_fine() {
        assert_eq!(
            judge_cache("u", LEDGER, row(70, 3), cache(0, 2, 0)),
            CacheVerdict::InFlight
        );
        assert_eq!(
            judge_cache("u", LEDGER, row(70, 3), None),
            CacheVerdict::Absent
        );
    }
}
