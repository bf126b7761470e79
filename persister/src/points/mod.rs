//! Points: `changes.rs` names what is written, `ledger.rs` writes the ledger and the balances it
//! moves in MySQL, `books.rs` decides each change (can this use be paid? does this refund give
//! its use back?), and `caches.rs` brings the users' caches in Redis in step after each commit.

mod books;
mod caches;
mod changes;
mod ledger;

pub use books::{can_pay, refund_gives_back};
pub use caches::{PointCaches, Settle};
pub use changes::{PointChange, PointsOutcome, Refused};
pub use ledger::write;
