//! A sample of evidence: ids counted in full, the first few kept to be shown. Every part of
//! the evidence uses it, so it has a room of its own.

use serde::Serialize;

/// How many ids a list of evidence shows (the count is always complete).
pub const SHOWN: usize = 10;

/// Ids, counted in full, the first [`SHOWN`] of them kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// How many there are.
    pub count: u64,
    /// The first few.
    pub first: Vec<String>,
}

impl Sample {
    /// The elements of `items` (counted all, the first [`SHOWN`] kept).
    pub fn of<I: IntoIterator<Item = String>>(items: I) -> Self {
        let mut sample = Self::default();
        for item in items {
            sample.push(item);
        }
        sample
    }

    /// Counts `item`, keeping it when fewer than [`SHOWN`] are kept.
    pub fn push(&mut self, item: String) {
        if self.first.len() < SHOWN {
            self.first.push(item);
        }
        self.count += 1;
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.count)?;
        if !self.first.is_empty() {
            let more = if self.count as usize > self.first.len() {
                ", …"
            } else {
                ""
            };
            write!(f, " ({}{more})", self.first.join(", "))?;
        }
        Ok(())
    }
}
