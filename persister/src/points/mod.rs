//! Points in MySQL (the ledger and the balances it moves) and the Redis caches brought in step
//! after each commit.

mod caches;
mod ledger;

pub use caches::{Caches, Settle};
pub use ledger::{Change, PointsOutcome, Refused, write};
