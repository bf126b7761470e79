//! A run against a gateway and its twin (`--twin`): what each of the two served, side by
//! side, with the latency histogram of each so that several runs can be pooled.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::latency::Latency;
use crate::tally::Tally;

/// One gateway's share of a run with a twin.
#[derive(Debug, Clone, Serialize)]
pub struct Lane {
    /// The gateway's base URL.
    pub target: String,
    /// Requests it answered in the measured window.
    pub measured_requests: u64,
    /// The same per second of the run's measured window (the same window for both lanes).
    pub throughput: f64,
    /// Latency of its measured answers.
    pub latency_ms: Latency,
    /// Its answers of the measured phase by kind and status.
    pub status_counts: BTreeMap<String, u64>,
    /// Its latency histogram: `[microseconds, answers]` for each recorded value (the highest
    /// of its bucket, 3 significant digits), smallest first. Histograms of several runs add
    /// up to their pooled distribution: `scripts/bench_compare.py` reads percentiles from it.
    pub latency_histogram_us: Vec<[u64; 2]>,
}

impl Lane {
    /// What `tally` observed at `target` during a measured window of `seconds`.
    pub fn new(target: String, tally: &Tally, seconds: f64) -> Self {
        Self {
            target,
            measured_requests: tally.measured,
            throughput: if seconds > 0.0 {
                tally.measured as f64 / seconds
            } else {
                0.0
            },
            latency_ms: Latency::of(tally),
            status_counts: tally.labelled(),
            latency_histogram_us: tally
                .latency
                .iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect(),
        }
    }
}

/// The lanes as a markdown table (nothing without a twin).
pub fn markdown(out: &mut String, lanes: &[Lane]) {
    if lanes.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Each gateway's share (arrivals alternate between the two):\n\n\
         | gateway | throughput | p50 | p90 | p99 | p99.9 | max | requests |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for lane in lanes {
        let _ = writeln!(
            out,
            "| {} | {:.0} req/s | {} | {} |",
            lane.target,
            lane.throughput,
            lane.latency_ms.cells(),
            lane.measured_requests
        );
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::client::Answer;
    use crate::scenario::{Call, Kind};

    #[test]
    fn a_lane_counts_its_measured_answers_and_its_histogram_adds_up_to_them() {
        let mut tally = Tally::default();
        let now = Instant::now();
        for (shopper, millis) in [(1, 2), (2, 2), (3, 40)] {
            let call = Call {
                kind: Kind::Purchase,
                shopper,
            };
            let answer = Answer::Http {
                status: http::StatusCode::ACCEPTED,
                code: None,
                id: Some(format!("{shopper}-a")),
            };
            tally.record(call, &answer, Duration::from_millis(millis), true, now);
        }

        let lane = Lane::new("http://127.0.0.1:1".into(), &tally, 2.0);

        assert_eq!(lane.measured_requests, 3);
        assert!((lane.throughput - 1.5).abs() < 1e-9);
        assert_eq!(lane.status_counts.get("purchase 202"), Some(&3));
        let counted: u64 = lane.latency_histogram_us.iter().map(|[_, n]| n).sum();
        assert_eq!(counted, 3);
        let values: Vec<u64> = lane.latency_histogram_us.iter().map(|[v, _]| *v).collect();
        assert_eq!(values.len(), 2, "two distinct latencies: {values:?}");
        assert!(values[0] >= 2_000 && values[0] < 2_010, "{values:?}");
        assert!(values[1] >= 40_000 && values[1] < 40_100, "{values:?}");
    }
}
