//! Latency percentiles of a run (or of one gateway's share of it), in milliseconds, read from
//! the hdrhistogram of a tally.

use serde::Serialize;

use crate::tally::Tally;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of a tally's histogram (microseconds) in milliseconds.
    pub fn of(tally: &Tally) -> Self {
        let h = &tally.latency;
        if h.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }

    /// p50, p90, p99, p99.9 and max as the cells of a markdown row.
    pub fn cells(&self) -> String {
        format!(
            "{:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms",
            self.p50, self.p90, self.p99, self.p999, self.max
        )
    }
}
