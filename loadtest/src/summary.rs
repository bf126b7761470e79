//! The benchmark's summary (`flashgate-loadtest summary`): several run reports side by side,
//! gateway throughput as a fraction of the Redis ceiling measured in the same benchmark,
//! and the targets (purchase-rush ≥ 50 % of the ceiling with p99 < 10 ms in open loop;
//! sold-out served at least twice as fast as admissions).

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::latency::Latency;
use crate::options::{Mode, Scenario};

/// Share of the Redis ceiling purchase-rush must sustain.
pub const CEILING_SHARE_TARGET: f64 = 0.5;
/// p99 purchase-rush must stay under, in milliseconds.
pub const P99_TARGET_MS: f64 = 10.0;
/// How much faster sold-out answers must be than admissions.
pub const SOLD_OUT_SPEEDUP_TARGET: f64 = 2.0;

/// The run's options, as its report records them.
#[derive(Debug, Clone, Deserialize)]
struct OptionFacts {
    scenario: String,
    mode: String,
    rate: u32,
    connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
struct Verdict {
    held: bool,
}

/// The parts of a run report the summary needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Facts {
    settings: OptionFacts,
    throughput: f64,
    latency_ms: LatencyFacts,
    invariants: Vec<Verdict>,
    drain_seconds: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct LatencyFacts {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Facts {
    /// Reads a JSON report written by a run.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("decoding {}", path.display()))
    }

    fn is(&self, scenario: Scenario, mode: Mode) -> bool {
        let mode = match mode {
            Mode::Open => "open",
            Mode::Closed => "closed",
        };
        self.settings.scenario == scenario.name() && self.settings.mode == mode
    }
}

/// Keeps `Latency` the one type of percentiles (the JSON field names are the same).
impl From<LatencyFacts> for Latency {
    fn from(l: LatencyFacts) -> Self {
        Latency {
            p50: l.p50,
            p90: 0.0,
            p99: l.p99,
            p999: l.p999,
            max: l.max,
            mean: 0.0,
        }
    }
}

/// The summary as markdown, and whether every target was met.
pub fn summarize(ceilings: &[f64], reports: &[Facts]) -> (String, bool) {
    let ceiling = if ceilings.is_empty() {
        0.0
    } else {
        ceilings.iter().sum::<f64>() / ceilings.len() as f64
    };
    let mut out = String::new();
    let shown: Vec<String> = ceilings.iter().map(|c| format!("{c:.0}")).collect();
    let _ = writeln!(
        out,
        "Redis ceiling (`EVALSHA` of `lua/purchase.lua`, redis-benchmark): {} ops/s (mean of {})\n",
        ceiling.round(),
        shown.join(" and ")
    );
    let _ = writeln!(
        out,
        "| scenario | loop | offered | throughput | of ceiling | p50 | p99 | p99.9 | max | drain | invariants |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in reports {
        let s = &r.settings;
        let offered = if s.mode == "open" {
            format!("{} req/s, {} conns", s.rate, s.connections)
        } else {
            format!("{} conns", s.connections)
        };
        let l = Latency::from(r.latency_ms);
        let held = r.invariants.iter().all(|v| v.held);
        let _ = writeln!(
            out,
            "| {} | {} | {offered} | {:.0} req/s | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} s | {} |",
            s.scenario,
            s.mode,
            r.throughput,
            share(r.throughput, ceiling),
            l.p50,
            l.p99,
            l.p999,
            l.max,
            r.drain_seconds,
            if held { "all held" } else { "**BROKEN**" }
        );
    }
    let mut met = reports.iter().all(|r| r.invariants.iter().all(|v| v.held));
    let _ = writeln!(out, "\n| target | measured | met |\n|---|---|---|");
    let rush_open = reports
        .iter()
        .find(|r| r.is(Scenario::PurchaseRush, Mode::Open));
    match rush_open {
        Some(r) => {
            let ok = ceiling > 0.0
                && r.throughput >= CEILING_SHARE_TARGET * ceiling
                && r.latency_ms.p99 < P99_TARGET_MS;
            met &= ok;
            let _ = writeln!(
                out,
                "| purchase-rush sustains ≥ {:.0} % of the Redis ceiling with p99 < {P99_TARGET_MS} ms (open loop) | {:.0} req/s = {}, p99 {:.2} ms | {} |",
                CEILING_SHARE_TARGET * 100.0,
                r.throughput,
                share(r.throughput, ceiling),
                r.latency_ms.p99,
                yes(ok)
            );
        }
        None => met = false,
    }
    let rush_closed = reports
        .iter()
        .find(|r| r.is(Scenario::PurchaseRush, Mode::Closed));
    let sold_out = reports
        .iter()
        .find(|r| r.is(Scenario::SoldOut, Mode::Closed));
    match (rush_closed, sold_out) {
        (Some(rush), Some(sold)) => {
            let speedup = sold.throughput / rush.throughput.max(1.0);
            let ok = speedup >= SOLD_OUT_SPEEDUP_TARGET;
            met &= ok;
            let _ = writeln!(
                out,
                "| sold-out served ≥ {SOLD_OUT_SPEEDUP_TARGET}× as fast as admissions (closed loop) | {:.0} vs {:.0} req/s = {speedup:.2}× | {} |",
                sold.throughput,
                rush.throughput,
                yes(ok)
            );
        }
        _ => met = false,
    }
    (out, met)
}

fn share(throughput: f64, ceiling: f64) -> String {
    if ceiling > 0.0 {
        format!("{:.0} %", 100.0 * throughput / ceiling)
    } else {
        "-".into()
    }
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(scenario: &str, mode: &str, throughput: f64, p99: f64) -> Facts {
        serde_json::from_value(serde_json::json!({
            "settings": {"scenario": scenario, "mode": mode, "rate": 5000, "connections": 64},
            "throughput": throughput,
            "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": p99, "p999": 9.0, "max": 12.0, "mean": 1.2},
            "invariants": [{"name": "x", "held": true, "evidence": ""}],
            "drain_seconds": 0.5
        }))
        .unwrap()
    }

    #[test]
    fn targets_are_judged_against_the_mean_ceiling() {
        let reports = [
            facts("purchase-rush", "open", 10_500.0, 6.0),
            facts("purchase-rush", "closed", 15_000.0, 20.0),
            facts("sold-out", "closed", 31_000.0, 5.0),
        ];
        let (text, met) = summarize(&[20_000.0, 22_000.0], &reports);
        assert!(met, "{text}");
        assert!(
            text.contains("| 10500 req/s = 50 %, p99 6.00 ms | yes |"),
            "{text}"
        );

        let slow = [
            facts("purchase-rush", "open", 9_000.0, 6.0),
            facts("purchase-rush", "closed", 15_000.0, 20.0),
            facts("sold-out", "closed", 20_000.0, 5.0),
        ];
        let (text, met) = summarize(&[20_000.0], &slow);
        assert!(!met);
        assert_eq!(text.matches("| **no** |").count(), 2, "{text}");
    }
}
