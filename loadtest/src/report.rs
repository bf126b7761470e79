//! The report of a run: throughput, latency percentiles, status counts, drain time, the
//! invariants, the machine, the commit and the settings; as markdown and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::evidence::{Evidence, PaymentEvidence};
use crate::invariants::Check;
use crate::latency::Latency;
use crate::options::RunOptions;
use crate::tally::Tally;

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores available to this process.
    pub cores: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Memory, from `/proc/meminfo`.
    pub memory: String,
    /// Operating system, from `/etc/os-release`.
    pub os: String,
}

impl Machine {
    /// Reads this machine's description (unknown parts say `unknown`).
    pub fn current() -> Self {
        let field = |path: &str, key: &str| -> Option<String> {
            std::fs::read_to_string(path)
                .ok()?
                .lines()
                .find_map(|line| {
                    let (k, v) = line.split_once([':', '='])?;
                    (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
                })
        };
        let unknown = || "unknown".to_owned();
        Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: field("/proc/cpuinfo", "model name").unwrap_or_else(unknown),
            memory: field("/proc/meminfo", "MemTotal")
                .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or_else(unknown, |kb| format!("{} GiB", kb / (1024 * 1024))),
            os: field("/etc/os-release", "PRETTY_NAME").unwrap_or_else(unknown),
        }
    }
}

/// The commit the run measured: `FLASHGATE_COMMIT`, else `git describe` of the working
/// directory (`-dirty` when it has changes), else `unknown`.
pub fn commit() -> String {
    if let Ok(commit) = std::env::var("FLASHGATE_COMMIT") {
        return commit;
    }
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The options of the run.
    pub settings: RunOptions,
    /// The gateway it ran against.
    pub target: String,
    /// The sale it created, if any.
    pub sale_id: Option<u64>,
    /// The coupon policy it created, if any.
    pub policy_id: Option<u64>,
    /// When it started (UTC).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The machine.
    pub machine: Machine,
    /// The commit measured.
    pub commit: String,
    /// Requests answered in the measured window (after the warm-up).
    pub measured_requests: u64,
    /// Length of the measured window, in seconds (warm-up end to the last answer).
    pub measured_seconds: f64,
    /// Measured answers per second.
    pub throughput: f64,
    /// Latency of the measured answers; in open loop from the intended send time.
    pub latency_ms: Latency,
    /// With a twin (`--twin`): the target's share, then the twin's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lanes: Vec<crate::lanes::Lane>,
    /// Answers of the measured phase by kind and status.
    pub status_counts: BTreeMap<String, u64>,
    /// Answers of the unmeasured set-up phase (sold-out's sell-out), by kind and status.
    pub setup_status_counts: BTreeMap<String, u64>,
    /// Time from the last answer until MySQL held everything admitted, in seconds.
    pub drain_seconds: f64,
    /// Whether the pipeline drained within the timeout.
    pub drained: bool,
    /// The verdict of every invariant.
    pub invariants: Vec<Check>,
    /// The evidence behind them.
    pub evidence: Evidence,
    /// Every answer of the run (set-up and measured), to judge the invariants again later
    /// ([`crate::recheck::recheck`]); not in the JSON.
    #[serde(skip)]
    pub observed: Tally,
    /// The tag of the run's user ids.
    pub tag: String,
    /// The waiting room's side of a queued-rush run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::queued::QueueRun>,
}

impl Report {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|c| c.held)
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## flashgate-loadtest: {} ({} loop)\n",
            s.scenario.name(),
            match s.mode {
                crate::options::Mode::Open => "open",
                crate::options::Mode::Closed => "closed",
            }
        );
        let rate = match s.mode {
            crate::options::Mode::Open => format!("{} req/s arrival rate, ", s.rate),
            crate::options::Mode::Closed => String::new(),
        };
        let _ = writeln!(
            out,
            "- settings: {rate}{} connections, duration {}s, warm-up {}s, {} shoppers, stock {}, \
             per-user limit {}{}{}{}; target {}; sale {}, coupon policy {}",
            s.connections,
            s.duration.as_secs_f64(),
            s.warmup.as_secs_f64(),
            s.shoppers,
            s.stock,
            s.per_user_limit,
            if crate::scenario::needs_policy(s) {
                format!(", coupons {}", s.coupons())
            } else {
                String::new()
            },
            s.payment_window().map_or(String::new(), |w| format!(
                ", payment window {}s",
                w.as_secs()
            )),
            if s.scenario == crate::options::Scenario::Lifecycle {
                let shares = s.lifecycle_shares;
                let paying = match s.pay_with {
                    crate::options::PayWith::MarkPaid => "by a manager's mark-paid".to_owned(),
                    crate::options::PayWith::Provider => {
                        format!("through the provider with {}", s.payment_token)
                    }
                };
                format!(
                    ", orders paid:cancelled:abandoned {}:{}:{} (paid {paying})",
                    shares.pay, shares.cancel, shares.abandon
                )
            } else {
                String::new()
            },
            self.target,
            self.sale_id.map_or("-".into(), |id| id.to_string()),
            self.policy_id.map_or("-".into(), |id| id.to_string()),
        );
        let m = &self.machine;
        let _ = writeln!(
            out,
            "- machine: {} cores ({}), {}, {}; commit {}; started {}\n",
            m.cores,
            m.cpu_model,
            m.memory,
            m.os,
            self.commit,
            self.started_at.to_rfc3339()
        );
        let _ = writeln!(
            out,
            "| throughput | p50 | p90 | p99 | p99.9 | max | requests | drain |\n|---|---|---|---|---|---|---|---|"
        );
        let _ = writeln!(
            out,
            "| {:.0} req/s | {} | {} in {:.2} s | {:.2} s{} |\n",
            self.throughput,
            self.latency_ms.cells(),
            self.measured_requests,
            self.measured_seconds,
            self.drain_seconds,
            if self.drained { "" } else { " (timed out)" }
        );
        crate::lanes::markdown(&mut out, &self.lanes);
        if let Some(payments) = self
            .evidence
            .sale
            .as_ref()
            .and_then(|s| s.payments.as_ref())
        {
            payments_section(&mut out, payments);
        }
        if let Some(queue) = &self.queue {
            // The latency above is the purchases' (with their pass), from their send.
            let _ = writeln!(out, "{}", queue.markdown());
        }
        let _ = writeln!(out, "| answers | count |\n|---|---|");
        for (label, count) in &self.status_counts {
            let _ = writeln!(out, "| {label} | {count} |");
        }
        for (label, count) in &self.setup_status_counts {
            let _ = writeln!(out, "| {label} (set-up, not measured) | {count} |");
        }
        let _ = writeln!(out, "\n| invariant | | evidence |\n|---|---|---|");
        for check in &self.invariants {
            let verdict = if check.held { "held" } else { "**BROKEN**" };
            let _ = writeln!(out, "| {} | {verdict} | {} |", check.name, check.evidence);
        }
        let _ = writeln!(
            out,
            "\n{}",
            if self.passed() {
                "All invariants held."
            } else {
                "**Invariants broken** (see the evidence above)."
            }
        );
        out
    }
}

/// The payments through the provider: how many ended paid, how long from the purchase's 202 to
/// `paid`, the saga's rows.
fn payments_section(out: &mut String, p: &PaymentEvidence) {
    let t = &p.time_to_paid;
    let settled = match &p.settled {
        Some(s) if s.all_final => format!("{:.2} s", s.seconds),
        Some(s) => format!("not all after {:.2} s", s.seconds),
        None => "-".to_owned(),
    };
    let _ = writeln!(
        out,
        "Payments through the provider ({}): time from the purchase's 202 to `paid` is MySQL's \
         `paid_at - admitted_at` of the orders that ended paid, both written by Redis's clock.\n",
        p.token
    );
    let _ = writeln!(
        out,
        "| taken (202) | refused | ended paid | share paid | 202 → paid p50 | p90 | p99 | max | mean | all final after the traffic |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {:.2} % | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {settled} |\n",
        p.requested,
        p.refused,
        p.ended_paid,
        p.paid_percent(),
        t.p50_ms,
        t.p90_ms,
        t.p99_ms,
        t.max_ms,
        t.mean_ms
    );
    if p.not_as_expected.count > 0 {
        let _ = writeln!(out, "Not {}: {}\n", p.expected, p.not_as_expected);
    }
    let rows: Vec<String> = p
        .rows
        .iter()
        .map(|(status, r)| {
            format!(
                "{status} {} (charge calls {}, at most {} for one)",
                r.count, r.attempts, r.most_attempts
            )
        })
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "The saga's `payments` rows of the sale: {}\n",
            rows.join("; ")
        );
    }
}
