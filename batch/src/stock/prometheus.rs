//! The stock reconciliation's report in the Prometheus text format (`--prometheus`), for the
//! job's cron to push to a Pushgateway: a sale whose Redis and MySQL counts drift then raises
//! `FlashgateStockDrift` (ops/prometheus/rules), and a job that stopped running raises
//! `FlashgateStockReconcileStale`. Every series is a gauge of the last run: a push replaces
//! the previous run's, so a drift repaired since clears its alert.

use std::fmt::Write as _;

use super::judge::Counter;
use super::report::{Finding, Outcome, Report};

impl Report {
    /// The report as a Prometheus text exposition; `finished_at` in seconds since the Unix
    /// epoch.
    pub fn exposition(&self, finished_at: i64) -> String {
        let mut out = String::with_capacity(1024);
        let name = "flashgate_stock_reconcile_sales";
        let _ = writeln!(
            out,
            "# HELP {name} sales of the last stock reconciliation, by result\n# TYPE {name} gauge"
        );
        for (result, n) in [
            ("checked", self.sales_checked),
            ("clean", self.clean),
            ("not_in_redis", self.not_in_redis),
            ("drifting", self.drifting),
            ("repaired", self.repaired),
            ("changed_while_reading", self.changed_while_reading),
            ("unfixable", self.unfixable),
            ("not_drained", self.not_drained),
        ] {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
        let name = "flashgate_stock_drifting_sale";
        let _ = writeln!(
            out,
            "# HELP {name} 1 for each sale whose Redis counters disagreed with MySQL, by what \
             became of it\n# TYPE {name} gauge"
        );
        let units = "flashgate_stock_drift_units";
        let mut differences = String::new();
        for finding in &self.findings {
            let Finding::Drift {
                sale_id,
                counters,
                outcome,
                ..
            } = finding
            else {
                continue;
            };
            let _ = writeln!(
                out,
                "{name}{{sale_id=\"{sale_id}\",outcome=\"{}\"}} 1",
                outcome_label(outcome)
            );
            for drift in counters {
                // An unreadable counter has no difference to show; the sale is flagged above.
                if let Some(found) = drift.found {
                    let _ = writeln!(
                        differences,
                        "{units}{{sale_id=\"{sale_id}\",counter=\"{}\"}} {}",
                        counter_label(drift.counter),
                        found - drift.expected
                    );
                }
            }
        }
        let _ = write!(
            out,
            "# HELP {units} what Redis held minus what MySQL says it must be, per drifting \
             sale and counter\n# TYPE {units} gauge\n{differences}"
        );
        let name = "flashgate_stock_reconcile_last_run_timestamp_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} when the last stock reconciliation finished\n# TYPE {name} gauge\n\
             {name} {finished_at}"
        );
        out
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Reported => "reported",
        Outcome::Repaired { .. } => "repaired",
        Outcome::ChangedWhileReading => "changed_while_reading",
        Outcome::Unfixable(_) => "unfixable",
    }
}

fn counter_label(counter: Counter) -> &'static str {
    match counter {
        Counter::Total => "total",
        Counter::Stock => "stock",
        Counter::Held => "held",
        Counter::Paid => "paid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stock::judge::{CounterDrift, MysqlSale};
    use crate::stock::report::RedisCounters;

    #[test]
    fn a_drifting_sale_is_flagged_with_its_counters_differences_and_the_totals() {
        let mut report = Report::new(false);
        report.sales_checked = 3;
        report.clean = 2;
        report.drifting = 1;
        report.findings.push(Finding::Drift {
            sale_id: 42,
            mysql: MysqlSale {
                sale_id: 42,
                total: 10,
                sold: 4,
                confirmed: 3,
                paid: 1,
            },
            redis: RedisCounters {
                total: Some(10),
                stock: Some(3),
                held: Some(3),
                paid: Some(1),
            },
            counters: vec![CounterDrift {
                counter: Counter::Stock,
                found: Some(3),
                expected: 6,
            }],
            outcome: Outcome::Reported,
        });

        let text = report.exposition(1_700_000_000);

        assert!(text.contains("flashgate_stock_reconcile_sales{result=\"checked\"} 3\n"));
        assert!(text.contains("flashgate_stock_reconcile_sales{result=\"drifting\"} 1\n"));
        assert!(
            text.contains("flashgate_stock_drifting_sale{sale_id=\"42\",outcome=\"reported\"} 1\n")
        );
        assert!(
            text.contains("flashgate_stock_drift_units{sale_id=\"42\",counter=\"stock\"} -3\n")
        );
        assert!(text.contains("flashgate_stock_reconcile_last_run_timestamp_seconds 1700000000\n"));
    }

    #[test]
    fn a_clean_run_declares_every_metric_and_flags_no_sale() {
        let text = Report::new(true).exposition(1_700_000_000);
        for name in [
            "flashgate_stock_reconcile_sales",
            "flashgate_stock_drifting_sale",
            "flashgate_stock_drift_units",
            "flashgate_stock_reconcile_last_run_timestamp_seconds",
        ] {
            assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
        }
        assert!(!text.contains("flashgate_stock_drifting_sale{"));
    }
}
