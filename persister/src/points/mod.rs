//! Points in MySQL (the ledger and the balances it moves) and the Redis caches brought in step
//! after each commit.

mod books;
mod caches;
mod ledger;

pub use books::{Change, PointsOutcome, Refused};
pub use caches::{Caches, Settle};
pub use ledger::write;
