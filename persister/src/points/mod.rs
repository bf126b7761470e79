//! Points: [`ledger`] writes the ledger and the balances it moves in MySQL, [`books`] decides
//! each change (can this use be paid? does this refund give its use back?), and [`caches`]
//! brings the users' caches in Redis in step after each commit.

mod books;
mod caches;
mod ledger;

pub use books::{PointChange, PointsOutcome, Refused, can_pay, refund_gives_back};
pub use caches::{PointCaches, Settle};
pub use ledger::write;
