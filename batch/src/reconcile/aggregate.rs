//! The aggregator: collects the workers' reports, adds finished ranges up in key order, moves
//! the watermark and keeps the checkpoint on disk.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::checkpoint::{Checkpoint, CheckpointFile, RangeRecord};
use super::report::RangeReport;
use super::summary::Stats;
use crate::progress::Progress;

/// Longest time finished ranges wait before the checkpoint records them. Findings that are
/// about to be repaired are saved at once: those are what a resumed run must not lose.
const SAVE_EVERY: Duration = Duration::from_millis(500);

/// The running state of a run and where it is saved.
pub struct Aggregator {
    state: Checkpoint,
    file: CheckpointFile,
    /// Sequence number of the first range not yet added to the totals.
    next_seq: u64,
    /// Ranges reported (or re-sent) beyond the watermark, by sequence number.
    ahead: BTreeMap<u64, RangeRecord>,
    /// Ranges of an interrupted run not yet re-sent, in key order (all beyond `ahead`).
    carried: Vec<RangeRecord>,
    last_save: Instant,
    dirty: bool,
    progress: Progress,
}

impl Aggregator {
    /// Continues `state` (fresh or loaded), saving to `file`. Its recorded ranges are moved
    /// out: they travel through the producer and come back as reports.
    pub fn new(mut state: Checkpoint, file: CheckpointFile, progress: Progress) -> Self {
        let carried = std::mem::take(&mut state.ahead);
        Self {
            state,
            file,
            next_seq: 0,
            ahead: BTreeMap::new(),
            carried,
            last_save: Instant::now(),
            dirty: false,
            progress,
        }
    }

    /// Takes reports until every worker is done; returns the totals and the number of ranges
    /// added up, or the first failure.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<RangeReport>,
    ) -> anyhow::Result<(Stats, u64)> {
        while let Some(report) = reports.recv().await {
            match report {
                RangeReport::Resent { seq, entry } => {
                    self.carried.retain(|e| e.lo != entry.lo);
                    self.ahead.insert(seq, entry);
                }
                RangeReport::Checked {
                    seq,
                    range,
                    stats,
                    saved,
                } => {
                    self.record(seq, range, false, stats);
                    self.save()?;
                    let _ = saved.send(());
                }
                RangeReport::Done { seq, range, stats } => {
                    self.record(seq, range, true, stats);
                    self.advance();
                    if self.last_save.elapsed() >= SAVE_EVERY {
                        self.save()?;
                    }
                }
                RangeReport::Failed(err) => {
                    self.progress.finish();
                    if self.dirty {
                        self.save()?;
                    }
                    return Err(err);
                }
            }
            let totals = &self.state.totals;
            let detail = format!(
                "{} users, {} mismatches",
                totals.users_checked,
                totals.mismatches.count()
            );
            self.progress.update(totals.ledger_rows, &detail);
        }
        self.progress.finish();
        anyhow::ensure!(
            self.ahead.is_empty(),
            "the run ended with {} ranges unfinished",
            self.ahead.len()
        );
        Ok((self.state.totals, self.next_seq))
    }

    fn record(&mut self, seq: u64, (lo, hi): (String, String), done: bool, stats: Stats) {
        self.ahead.insert(
            seq,
            RangeRecord {
                lo,
                hi,
                done,
                stats,
            },
        );
        self.dirty = true;
    }

    /// Adds finished ranges that follow the watermark to the totals, in key order.
    fn advance(&mut self) {
        while self.ahead.get(&self.next_seq).is_some_and(|e| e.done) {
            let entry = self.ahead.remove(&self.next_seq).expect("present");
            self.state.totals.merge(&entry.stats);
            self.state.done_through = entry.hi;
            self.next_seq += 1;
        }
    }

    fn save(&mut self) -> anyhow::Result<()> {
        let mut state = self.state.clone();
        state.ahead = self.ahead.values().cloned().collect();
        state.ahead.extend(self.carried.iter().cloned());
        self.file.save(&state)?;
        self.last_save = Instant::now();
        self.dirty = false;
        Ok(())
    }
}
