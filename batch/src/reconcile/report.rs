//! What the producer ([`super::ranges`]) and the workers ([`super::worker`]) tell the
//! aggregator ([`super::aggregate`]) about each range, on one bounded channel. A room of its
//! own, so that none of the three imports another to speak to it.

use tokio::sync::oneshot;

use super::checkpoint::RangeRecord;
use super::summary::Stats;

/// What the producer or a worker tells the aggregator about a range.
#[derive(Debug)]
pub enum RangeReport {
    /// The producer handed out a range an interrupted run had recorded (sent before the range
    /// itself, so it always arrives before the range's `Done`).
    Resent {
        /// Position in this run.
        seq: u64,
        /// The recorded range.
        entry: RangeRecord,
    },
    /// A range was checked and is about to be repaired; the worker waits for `saved` so the
    /// findings are in the checkpoint before anything changes.
    Checked {
        /// Position in this run.
        seq: u64,
        /// The range.
        range: (String, String),
        /// What it found.
        stats: Stats,
        /// Answered once the checkpoint holds the findings.
        saved: oneshot::Sender<()>,
    },
    /// A range is finished.
    Done {
        /// Position in this run.
        seq: u64,
        /// The range.
        range: (String, String),
        /// What it found and repaired.
        stats: Stats,
    },
    /// A worker gave up; the run stops (its checkpoint stays for a resume).
    Failed(anyhow::Error),
}
