//! Orders in MySQL: `store.rs` reads and writes admissions in the batch's transaction and
//! runs the batch's steps, `rules.rs` decides each admission (is it within stock? within the
//! per-user limit?), `ends.rs` decides each end (cancelled, expired, paid) and `ends_store.rs`
//! writes it, `history.rs` records every transition; `records.rs` forgets, in Redis, the
//! records of orders whose end MySQL holds.

mod ends;
mod ends_store;
mod history;
mod records;
mod rules;
mod store;

pub use ends::End;
pub use records::OrderRecords;
pub use rules::{OrdersOutcome, RejectReason, within_per_user_limit, within_stock};
pub use store::write;
