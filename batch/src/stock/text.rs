//! The text an operator reads: one line per sale that is not clean (the sale, what differs
//! with what MySQL says it must be, what was done), then the totals.

use std::fmt;

use super::judge::{Counter, Unfixable};
use super::report::{Finding, NotDrained, Outcome, Report};

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
    use super::super::report::tests::drift;
    use super::*;

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
