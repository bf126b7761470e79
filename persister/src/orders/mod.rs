//! Orders in MySQL: `steps.rs` runs the batch's steps in its transaction, `store.rs` reads and
//! writes admissions, `rules.rs` decides each admission (is it within stock? within the
//! per-user limit?), `waits.rs` parks the refused ones until their units come back or their
//! wait is over, `ends.rs` decides each end (cancelled, expired, paid, and a paid order
//! cancelled) and `ends_store.rs` writes it, `history.rs` records every transition;
//! `records.rs` forgets, in Redis, the records of orders whose end MySQL holds.

mod ends;
mod ends_store;
mod history;
mod records;
mod rules;
mod steps;
mod store;
mod waits;

pub use ends::End;
pub use records::OrderRecords;
pub use rules::{OrdersOutcome, RejectReason, within_per_user_limit, within_stock};
pub use steps::{OrderEvents, write};
