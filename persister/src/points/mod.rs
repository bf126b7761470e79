//! Points: [`changes`] names what is written, [`ledger`] writes the ledger and the balances it
//! moves in MySQL, [`books`] decides each change (can this use be paid? does this refund give
//! its use back?), and [`caches`] brings the users' caches in Redis in step after each commit.

mod books;
mod caches;
mod changes;
mod ledger;

pub use books::{can_pay, refund_gives_back};
pub use caches::{PointCaches, Settle};
pub use changes::{PointChange, PointsOutcome, Refused};
pub use ledger::write;
