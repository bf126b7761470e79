//! The checkpoint of a reconciliation run: the user id below which every range is finished,
//! what those ranges found, and the ranges beyond it that finished (or were checked and are
//! being repaired) out of order. Written atomically (a temporary file, then a rename), so a
//! run killed at any instant leaves the previous checkpoint or the new one, never half of one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::summary::Stats;

/// Version of the file format.
const FORMAT: u32 = 1;

/// A range beyond the watermark that an interrupted run recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRecord {
    /// Exclusive lower bound.
    pub lo: String,
    /// Inclusive upper bound.
    pub hi: String,
    /// `true`: finished. `false`: checked, its repairs were under way.
    pub done: bool,
    /// What it found (and, when done, repaired).
    pub stats: Stats,
}

/// The saved state of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The file's format: a checkpoint of another format is not continued.
    pub format: u32,
    /// Whether the run repairs; a run resumes only a checkpoint of the same kind.
    pub fix: bool,
    /// The Redis key prefix the run checks caches under.
    pub key_prefix: String,
    /// Every user id up to and including this one is finished (empty: none yet).
    pub done_through: String,
    /// What the finished ranges found, in key order.
    pub totals: Stats,
    /// Ranges beyond `done_through` recorded out of order, in key order.
    pub ahead: Vec<RangeRecord>,
}

impl Checkpoint {
    /// The state of a run that has not started.
    pub fn new(fix: bool, key_prefix: &str) -> Self {
        Self {
            format: FORMAT,
            fix,
            key_prefix: key_prefix.to_owned(),
            done_through: String::new(),
            totals: Stats::default(),
            ahead: Vec::new(),
        }
    }

    /// Whether a run with these options may continue this checkpoint.
    pub fn matches(&self, fix: bool, key_prefix: &str) -> bool {
        self.format == FORMAT && self.fix == fix && self.key_prefix == key_prefix
    }
}

/// Where the checkpoint of one database lives.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// `<dir>/reconcile-points-<database>.json`.
    pub fn new(dir: &Path, database: &str) -> Self {
        Self {
            path: dir.join(format!("reconcile-points-{database}.json")),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved checkpoint, if there is one.
    pub fn load(&self) -> anyhow::Result<Option<Checkpoint>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("reading checkpoint {}", self.path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => {
                Err(err).with_context(|| format!("reading checkpoint {}", self.path.display()))
            }
        }
    }

    /// Replaces the saved checkpoint atomically: write a temporary file, flush it to disk,
    /// rename it over the old one.
    pub fn save(&self, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating checkpoint folder {}", dir.display()))?;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            serde_json::to_writer(&mut file, checkpoint)?;
            file.sync_data()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().with_context(|| format!("writing checkpoint {}", self.path.display()))
    }

    /// Deletes the checkpoint (after a finished run, or to start over).
    pub fn remove(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("removing checkpoint {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_checkpoint_loads_back_the_same_and_removal_forgets_it() {
        let dir = std::env::temp_dir().join(format!("fg-checkpoint-{}", std::process::id()));
        let file = CheckpointFile::new(&dir, "db1");
        assert_eq!(file.load().expect("load"), None);
        let mut checkpoint = Checkpoint::new(true, "fg");
        checkpoint.done_through = "user-42".to_owned();
        checkpoint.ahead.push(RangeRecord {
            lo: "user-50".to_owned(),
            hi: "user-60".to_owned(),
            done: false,
            stats: Stats::default(),
        });
        file.save(&checkpoint).expect("save");
        assert_eq!(file.load().expect("load"), Some(checkpoint.clone()));
        assert!(checkpoint.matches(true, "fg"));
        assert!(!checkpoint.matches(false, "fg"));
        file.remove().expect("remove");
        assert_eq!(file.load().expect("load"), None);
        let _ = std::fs::remove_dir(&dir);
    }
}
