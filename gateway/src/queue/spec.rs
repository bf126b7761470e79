//! A sale's waiting room as the manager sets it (`queue` at creation, changes by `PATCH`) and
//! sees it (the sale view's `queue`, with live counts).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failure::Invalid;

/// Highest admission rate a room may have, per second.
pub const MAX_ADMIT_PER_SECOND: u32 = 100_000;

/// The `queue` object of `POST /v1/admin/sales`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// `draw`: who joined before the start is ordered by the verifiable draw.
    pub mode: String,
    /// When joining opens (RFC 3339), before the sale's `starts_at`.
    pub opens_at: DateTime<Utc>,
    /// Tickets admitted per second, 1 to 100,000.
    pub admit_per_second: u32,
    /// Most passes outstanding at once (admitted, not used or expired yet); none by default.
    #[serde(default)]
    pub max_active: Option<u32>,
}

impl QueueSpec {
    /// The first field that is wrong, if any, for a sale starting at `starts_at`.
    pub fn validate(&self, starts_at: DateTime<Utc>) -> Result<(), Invalid> {
        if self.mode != "draw" {
            return Err(Invalid::new("queue.mode: must be \"draw\""));
        }
        if self.opens_at >= starts_at {
            return Err(Invalid::new("queue.opens_at: must be before starts_at"));
        }
        check_rate(self.admit_per_second)?;
        if self.max_active == Some(0) {
            return Err(Invalid::new("queue.max_active: must be at least 1"));
        }
        Ok(())
    }
}

fn check_rate(rate: u32) -> Result<(), Invalid> {
    if !(1..=MAX_ADMIT_PER_SECOND).contains(&rate) {
        return Err(Invalid::new(format!(
            "queue.admit_per_second: must be between 1 and {MAX_ADMIT_PER_SECOND}"
        )));
    }
    Ok(())
}

/// The `queue` object of `PATCH /v1/admin/sales/{id}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    /// New admission rate.
    #[serde(default)]
    pub admit_per_second: Option<u32>,
    /// Pause (`true`) or resume (`false`) admission.
    #[serde(default)]
    pub paused: Option<bool>,
}

impl QueuePatch {
    /// The first field that is wrong, if any.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.admit_per_second.is_none() && self.paused.is_none() {
            return Err(Invalid::new(
                "queue: give admit_per_second or paused (or both)",
            ));
        }
        self.admit_per_second.map(check_rate).transpose()?;
        Ok(())
    }
}

/// A waiting room as MySQL stores it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredQueue {
    /// `draw`.
    pub mode: String,
    /// When joining opens.
    pub opens_at: DateTime<Utc>,
    /// Tickets admitted per second.
    pub admit_per_second: u32,
    /// Most passes outstanding at once.
    pub max_active: Option<u32>,
    /// Admission paused by a manager.
    pub paused: bool,
    /// hex(SHA-256(seed)), published from creation on.
    pub commitment: String,
    /// When the draw happened.
    pub drawn_at: Option<DateTime<Utc>>,
    /// hex of the 32-byte seed: secret until the draw.
    #[serde(skip)]
    pub seed: String,
}

/// Live counts of a room from Redis.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct QueueCounts {
    /// Tickets given (every user who joined, once).
    pub joined: i64,
    /// Tickets admitted (given a pass).
    pub admitted: i64,
    /// Tickets still waiting (before the draw, or in the line).
    pub waiting: i64,
    /// Tickets dropped: their owner stopped polling.
    pub dropped: i64,
    /// Passes that expired unused.
    pub expired: i64,
    /// Passes outstanding now.
    pub active: i64,
    /// The admission rate in force, per second.
    pub admit_per_second: i64,
    /// Admission paused.
    pub paused: bool,
    /// The draw has run.
    pub drawn: bool,
}

/// The sale view's `queue`: settings, commitment, and live counts (null when Redis does not
/// hold the room).
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    /// As stored.
    #[serde(flatten)]
    pub stored: StoredQueue,
    /// From Redis.
    pub live: Option<QueueCounts>,
}
