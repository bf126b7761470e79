//! Counters of the persister, in the Prometheus text format: `counters.rs` holds the process's
//! counters and gauges, `counts.rs` what one batch adds to them, `text.rs` renders them for
//! `/metrics` (with the consumer's lag, measured from Kafka's timestamps).

mod counters;
mod counts;
mod text;

pub use counters::Metrics;
pub use counts::Counts;
pub use text::{lag_seconds, now_ms};
