//! What a stock reconciliation found and did: one finding per sale that is not clean, the
//! totals, the exit code; printed as JSON, or as text (`text.rs`).

use serde::Serialize;

use super::judge::{CounterDrift, Counters, MysqlSale, RedisSale, Unfixable};
use crate::exit::{EXIT_CLEAN, EXIT_DRIFT};

/// Redis's counters of a sale as a finding shows them (absent `held`/`paid` as 0; `None`: not
/// an integer, or an absent total).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RedisCounters {
    /// `total` of the sale hash.
    pub total: Option<i64>,
    /// Units left.
    pub stock: Option<i64>,
    /// Units in open orders.
    pub held: Option<i64>,
    /// Units in paid orders.
    pub paid: Option<i64>,
}

impl From<&RedisSale> for RedisCounters {
    fn from(redis: &RedisSale) -> Self {
        Self {
            total: redis.total.0.as_ref().and_then(|t| t.parse().ok()),
            stock: redis.stock.value(),
            held: redis.held.value(),
            paid: redis.paid.value(),
        }
    }
}

/// What became of a drifting sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Reported only (no `--fix`).
    Reported,
    /// Repaired: the counters were `before` and are now `after`.
    Repaired {
        /// What Redis held.
        before: RedisCounters,
        /// What it holds now.
        after: Counters,
    },
    /// Redis or MySQL changed between the check and the repair (a purchase, an order's end,
    /// a cleanup, the persister catching up): left alone; the next run judges it again.
    ChangedWhileReading,
    /// No setting of the Redis counters can repair it: a person must look.
    Unfixable(Unfixable),
}

/// Why a sale was not judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum NotDrained {
    /// Its outbox still held events at the last look.
    Outbox {
        /// Entries in it.
        entries: u64,
    },
    /// Its counters (in Redis or MySQL) were different at every look.
    StillMoving,
}

/// A sale that is not clean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Finding {
    /// Redis and MySQL disagree (seen twice, the same).
    Drift {
        /// The sale.
        sale_id: u64,
        /// What MySQL holds.
        mysql: MysqlSale,
        /// What Redis held.
        redis: RedisCounters,
        /// Each counter that differs.
        counters: Vec<CounterDrift>,
        /// Reported, repaired, or why not.
        #[serde(flatten)]
        outcome: Outcome,
    },
    /// Still in flight after the settle time: not judged (run again after the drain).
    NotDrained {
        /// The sale.
        sale_id: u64,
        /// Why.
        #[serde(flatten)]
        why: NotDrained,
    },
}

/// The summary of a run, printed at its end.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `reconcile-stock`.
    pub job: &'static str,
    /// Whether drift was repaired.
    pub fix: bool,
    /// Sales looked at (every sale, or those of `--sale`).
    pub sales_checked: u64,
    /// Sales Redis and MySQL agree on.
    pub clean: u64,
    /// Sales not in Redis (cleaned up or never loaded): skipped, not drift.
    pub not_in_redis: u64,
    /// Sales whose counters disagree.
    pub drifting: u64,
    /// Of those, repaired.
    pub repaired: u64,
    /// Of those, changed between the check and the repair, and left alone.
    pub changed_while_reading: u64,
    /// Of those, not repairable by this job.
    pub unfixable: u64,
    /// Sales still in flight after the settle time, not judged.
    pub not_drained: u64,
    /// Every sale that is not clean, in id order.
    pub findings: Vec<Finding>,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
    /// The exit code: 0 clean, 2 drift found (repaired or not) or a sale not drained.
    pub exit_code: u8,
}

impl Report {
    /// An empty report of a run (`fix`: whether it repairs).
    pub fn new(fix: bool) -> Self {
        Self {
            job: "reconcile-stock",
            fix,
            sales_checked: 0,
            clean: 0,
            not_in_redis: 0,
            drifting: 0,
            repaired: 0,
            changed_while_reading: 0,
            unfixable: 0,
            not_drained: 0,
            findings: Vec::new(),
            elapsed_ms: 0,
            exit_code: EXIT_CLEAN,
        }
    }

    /// Adds a sale that is not clean.
    pub fn record(&mut self, finding: Finding) {
        match &finding {
            Finding::Drift { outcome, .. } => {
                self.drifting += 1;
                match outcome {
                    Outcome::Reported => {}
                    Outcome::Repaired { .. } => self.repaired += 1,
                    Outcome::ChangedWhileReading => self.changed_while_reading += 1,
                    Outcome::Unfixable(_) => self.unfixable += 1,
                }
            }
            Finding::NotDrained { .. } => self.not_drained += 1,
        }
        self.findings.push(finding);
    }

    /// Ends the report: findings in sale order, the time taken, the exit code.
    pub fn finish(mut self, elapsed: std::time::Duration) -> Self {
        self.findings.sort_by_key(|finding| match finding {
            Finding::Drift { sale_id, .. } | Finding::NotDrained { sale_id, .. } => *sale_id,
        });
        self.elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.exit_code = if self.findings.is_empty() {
            EXIT_CLEAN
        } else {
            EXIT_DRIFT
        };
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::judge::Counter;
    use super::*;

    /// A finding of sale `sale_id`, stock one unit high, with `outcome`.
    pub(crate) fn drift(sale_id: u64, outcome: Outcome) -> Finding {
        Finding::Drift {
            sale_id,
            mysql: MysqlSale {
                sale_id,
                total: 10,
                sold: 4,
                confirmed: 3,
                paid: 1,
            },
            redis: RedisCounters {
                total: Some(10),
                stock: Some(7),
                held: Some(3),
                paid: Some(1),
            },
            counters: vec![CounterDrift {
                counter: Counter::Stock,
                found: Some(7),
                expected: 6,
            }],
            outcome,
        }
    }

    #[test]
    fn a_clean_run_exits_0_and_any_finding_even_repaired_exits_2() {
        let clean = Report::new(false).finish(Default::default());
        assert_eq!(clean.exit_code, EXIT_CLEAN);
        let mut fixed = Report::new(true);
        fixed.record(drift(
            3,
            Outcome::Repaired {
                before: RedisCounters {
                    total: Some(10),
                    stock: Some(7),
                    held: Some(3),
                    paid: Some(1),
                },
                after: Counters {
                    stock: 6,
                    held: 3,
                    paid: 1,
                },
            },
        ));
        fixed.record(Finding::NotDrained {
            sale_id: 1,
            why: NotDrained::Outbox { entries: 2 },
        });
        let fixed = fixed.finish(Default::default());
        assert_eq!(fixed.exit_code, EXIT_DRIFT);
        assert_eq!(
            (fixed.drifting, fixed.repaired, fixed.not_drained),
            (1, 1, 1)
        );
        assert!(matches!(
            fixed.findings[0],
            Finding::NotDrained { sale_id: 1, .. }
        ));
    }
}
