//! What a stock reconciliation found and did: one finding per sale that is not clean, the
//! totals, the exit code, and the text an operator reads (or the JSON a script reads).

use std::fmt;

use serde::Serialize;

use super::judge::{Counter, CounterDrift, Counters, MysqlSale, RedisSale, Unfixable};
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

fn number(value: Option<i64>) -> String {
    value.map_or_else(|| "unreadable".to_owned(), |v| v.to_string())
}

impl fmt::Display for Finding {
    /// One line: the sale, what differs (found, then what it must be), what was done.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NotDrained { sale_id, why } => match why {
                NotDrained::Outbox { entries } => write!(
                    f,
                    "sale {sale_id}: NOT DRAINED: its outbox still holds {entries} event(s) \
                     not relayed to Kafka; not judged (run again once the relay and the \
                     persister have caught up)"
                ),
                NotDrained::StillMoving => write!(
                    f,
                    "sale {sale_id}: NOT DRAINED: its counters changed at every look; not \
                     judged (run again once the sale is quiet)"
                ),
            },
            Finding::Drift {
                sale_id,
                mysql,
                redis,
                counters,
                outcome,
            } => {
                write!(f, "sale {sale_id}: DRIFT")?;
                for (n, drift) in counters.iter().enumerate() {
                    let name = match drift.counter {
                        Counter::Total => "total",
                        Counter::Stock => "stock",
                        Counter::Held => "held",
                        Counter::Paid => "paid",
                    };
                    let sep = if n == 0 { " " } else { ", " };
                    write!(
                        f,
                        "{sep}{name} {} (MySQL says {})",
                        number(drift.found),
                        drift.expected
                    )?;
                }
                let sum = match (redis.stock, redis.held, redis.paid) {
                    (Some(s), Some(h), Some(p)) => (s + h + p).to_string(),
                    _ => "unreadable".to_owned(),
                };
                write!(
                    f,
                    "; Redis stock+held+paid = {sum}, total {}; MySQL total {}, sold {}, \
                     confirmed {}, paid {}",
                    number(redis.total),
                    mysql.total,
                    mysql.sold,
                    mysql.confirmed,
                    mysql.paid
                )?;
                match outcome {
                    Outcome::Reported => write!(f, " -> not repaired (run with --fix)"),
                    Outcome::Repaired { after, .. } => write!(
                        f,
                        " -> REPAIRED to stock {}, held {}, paid {}",
                        after.stock, after.held, after.paid
                    ),
                    Outcome::ChangedWhileReading => {
                        write!(f, " -> CHANGED WHILE READING: left alone (run again)")
                    }
                    Outcome::Unfixable(Unfixable::MysqlSold { sold, orders }) => write!(
                        f,
                        " -> NOT REPAIRABLE: MySQL sold {sold} is not the {orders} unit(s) of \
                         its confirmed and paid orders; a person must look"
                    ),
                    Outcome::Unfixable(Unfixable::Total { redis, mysql }) => write!(
                        f,
                        " -> NOT REPAIRABLE: Redis holds the sale with total {}, MySQL with \
                         {mysql}; a person must look",
                        number(*redis)
                    ),
                    Outcome::Unfixable(Unfixable::OpenOrders { redis, mysql }) => write!(
                        f,
                        " -> NOT REPAIRABLE: Redis's open orders hold {} unit(s), MySQL's \
                         confirmed orders {mysql}; an order MySQL rejected is held until its \
                         pay_by, or Redis lost one: a person must look if it lasts",
                        if *redis < 0 {
                            "unreadable".to_owned()
                        } else {
                            redis.to_string()
                        }
                    ),
                }
            }
        }
    }
}

impl fmt::Display for Report {
    /// A line per sale that is not clean, then the totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        write!(
            f,
            "reconcile-stock: {} sale(s) checked: {} clean, {} drifting",
            self.sales_checked, self.clean, self.drifting
        )?;
        if self.drifting > 0 {
            write!(
                f,
                " ({} repaired, {} changed while reading, {} not repairable)",
                self.repaired, self.changed_while_reading, self.unfixable
            )?;
        }
        write!(
            f,
            ", {} not drained, {} not in Redis (skipped); {:.1} s; exit {}",
            self.not_drained,
            self.not_in_redis,
            self.elapsed_ms as f64 / 1000.0,
            self.exit_code
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(sale_id: u64, outcome: Outcome) -> Finding {
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

    #[test]
    fn a_drifting_sale_reads_as_one_line_naming_the_sale_the_counter_and_the_truth() {
        let line = drift(3, Outcome::ChangedWhileReading).to_string();
        assert_eq!(
            line,
            "sale 3: DRIFT stock 7 (MySQL says 6); Redis stock+held+paid = 11, total 10; \
             MySQL total 10, sold 4, confirmed 3, paid 1 -> CHANGED WHILE READING: left alone \
             (run again)"
        );
        assert!(!line.contains('\n'));
    }
}
