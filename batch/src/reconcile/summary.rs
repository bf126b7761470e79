//! What a reconciliation found: per-range statistics, how they add up, and the JSON summary.

use serde::{Deserialize, Serialize};

pub use crate::exit::{EXIT_CLEAN, EXIT_DRIFT};

/// Most mismatches (and unsettled users) a summary lists by name.
pub const SAMPLE_SIZE: usize = 20;

/// Which of the three stores disagrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// `point_balances.balance` differs from the sum of the user's ledger.
    Balance,
    /// The user has ledger rows but no `point_balances` row.
    MissingBalance,
    /// The Redis cache reflects the balance row's version, yet `balance + pending` differs.
    Cache,
}

/// One user whose stores disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The user.
    pub user_id: String,
    /// What disagrees.
    pub kind: MismatchKind,
    /// The truth: the sum of the user's ledger.
    pub ledger: i64,
    /// The balance row (0 when missing).
    pub balance: i64,
    /// `balance + pending` of the cache, for cache mismatches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<i64>,
    /// How far off the stored value is (absolute).
    pub drift: u64,
}

/// Count and summed absolute drift of one kind of mismatch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftTally {
    /// Users with this mismatch.
    pub count: u64,
    /// Sum of their absolute drift, in points.
    pub drift: u64,
}

impl DriftTally {
    fn add(&mut self, other: DriftTally) {
        self.count += other.count;
        self.drift += other.drift;
    }
}

/// Mismatches by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatches {
    /// Balance rows that differ from the ledger.
    pub balance: DriftTally,
    /// Users with ledger rows and no balance row.
    pub missing_balance: DriftTally,
    /// Cache entries that differ from their balance row.
    pub cache: DriftTally,
}

impl Mismatches {
    /// Every mismatch, of any kind.
    pub fn count(&self) -> u64 {
        self.balance.count + self.missing_balance.count + self.cache.count
    }

    /// Summed absolute drift of every kind.
    pub fn drift(&self) -> u64 {
        self.balance.drift + self.missing_balance.drift + self.cache.drift
    }

    fn tally_mut(&mut self, kind: MismatchKind) -> &mut DriftTally {
        match kind {
            MismatchKind::Balance => &mut self.balance,
            MismatchKind::MissingBalance => &mut self.missing_balance,
            MismatchKind::Cache => &mut self.cache,
        }
    }
}

/// What one range (or a whole run) found and did. Ranges add up in key order, so the sample
/// is the first mismatches by user id, the same however the work was split or resumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Users looked at (with a balance row, ledger rows or both).
    pub users_checked: u64,
    /// Ledger rows summed.
    pub ledger_rows: u64,
    /// Mismatches found, by kind.
    pub mismatches: Mismatches,
    /// The first mismatches, at most [`SAMPLE_SIZE`].
    pub sample: Vec<Mismatch>,
    /// Mismatches repaired (with `--fix`).
    pub fixed: u64,
    /// Mismatches that cannot be repaired by setting the balance (a negative ledger sum, which
    /// the `balance >= 0` check refuses): they need a person.
    pub unfixable: u64,
    /// Users whose cache stayed between two versions through every re-check: an update was
    /// still in flight, so they were neither judged nor touched.
    pub unsettled: u64,
    /// The first unsettled users, at most [`SAMPLE_SIZE`].
    pub unsettled_sample: Vec<String>,
}

impl Stats {
    /// Counts `mismatch` and keeps it in the sample while there is room.
    pub fn record(&mut self, mismatch: Mismatch) {
        self.mismatches.tally_mut(mismatch.kind).add(DriftTally {
            count: 1,
            drift: mismatch.drift,
        });
        if self.sample.len() < SAMPLE_SIZE {
            self.sample.push(mismatch);
        }
    }

    /// Counts an unsettled user.
    pub fn record_unsettled(&mut self, user_id: &str) {
        self.unsettled += 1;
        if self.unsettled_sample.len() < SAMPLE_SIZE {
            self.unsettled_sample.push(user_id.to_owned());
        }
    }

    /// Adds the statistics of the range that follows this one in key order.
    pub fn merge(&mut self, next: &Stats) {
        self.users_checked += next.users_checked;
        self.ledger_rows += next.ledger_rows;
        self.mismatches.balance.add(next.mismatches.balance);
        self.mismatches
            .missing_balance
            .add(next.mismatches.missing_balance);
        self.mismatches.cache.add(next.mismatches.cache);
        let room = SAMPLE_SIZE.saturating_sub(self.sample.len());
        self.sample.extend(next.sample.iter().take(room).cloned());
        self.fixed += next.fixed;
        self.unfixable += next.unfixable;
        self.unsettled += next.unsettled;
        let room = SAMPLE_SIZE.saturating_sub(self.unsettled_sample.len());
        self.unsettled_sample
            .extend(next.unsettled_sample.iter().take(room).cloned());
    }
}

/// The JSON document printed on stdout at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Always `reconcile-points`.
    pub job: &'static str,
    /// Whether mismatches were repaired.
    pub fix: bool,
    /// Whether this run continued a checkpoint of a killed run.
    pub resumed: bool,
    /// Everything found, including what the resumed run had found before it stopped.
    #[serde(flatten)]
    pub stats: Stats,
    /// Mismatches of every kind.
    pub mismatch_count: u64,
    /// Summed absolute drift of every kind, in points.
    pub total_drift: u64,
    /// Wall time of this process, in milliseconds.
    pub elapsed_ms: u64,
    /// Ledger rows summed per second of this process's wall time.
    pub ledger_rows_per_second: u64,
    /// The exit code: 0 clean, 2 drift found (fixed or not).
    pub exit_code: u8,
}

impl Summary {
    /// The summary of a finished run.
    pub fn new(fix: bool, resumed: bool, stats: Stats, elapsed: std::time::Duration) -> Self {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let secs = elapsed.as_secs_f64().max(0.001);
        let mismatch_count = stats.mismatches.count();
        Self {
            job: "reconcile-points",
            fix,
            resumed,
            mismatch_count,
            total_drift: stats.mismatches.drift(),
            elapsed_ms,
            ledger_rows_per_second: (stats.ledger_rows as f64 / secs) as u64,
            exit_code: if mismatch_count == 0 {
                EXIT_CLEAN
            } else {
                EXIT_DRIFT
            },
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(user: &str, drift: u64) -> Mismatch {
        Mismatch {
            user_id: user.to_owned(),
            kind: MismatchKind::Balance,
            ledger: 0,
            balance: drift as i64,
            cache: None,
            drift,
        }
    }

    #[test]
    fn merged_ranges_keep_the_first_mismatches_in_key_order() {
        let mut first = Stats::default();
        for n in 0..15 {
            first.record(mismatch(&format!("a{n:02}"), 1));
        }
        let mut second = Stats::default();
        for n in 0..15 {
            second.record(mismatch(&format!("b{n:02}"), 2));
        }
        first.merge(&second);
        assert_eq!(
            first.mismatches.balance,
            DriftTally {
                count: 30,
                drift: 45
            }
        );
        assert_eq!(first.sample.len(), SAMPLE_SIZE);
        assert_eq!(first.sample[14].user_id, "a14");
        assert_eq!(first.sample[15].user_id, "b00");
    }

    #[test]
    fn a_run_with_any_mismatch_exits_with_two() {
        let clean = Summary::new(false, false, Stats::default(), Default::default());
        assert_eq!(clean.exit_code, EXIT_CLEAN);
        let mut stats = Stats::default();
        stats.record(mismatch("u", 3));
        let drifted = Summary::new(true, false, stats, Default::default());
        assert_eq!((drifted.exit_code, drifted.total_drift), (EXIT_DRIFT, 3));
    }
}
