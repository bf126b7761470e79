//! flashgate's load generator: open-loop (constant arrival rate, corrected for coordinated
//! omission) and closed-loop traffic against the gateway, followed by the invariant checks
//! and a report.

pub mod choices;
pub mod client;
pub mod drain;
pub mod driver;
pub mod evidence;
pub mod invariants;
pub mod lanes;
pub mod latency;
pub mod manager;
pub mod options;
pub mod progress;
pub mod queued;
pub mod recheck;
pub mod recovery;
pub mod report;
pub mod run;
pub mod scenario;
pub mod summary;
pub mod tally;
