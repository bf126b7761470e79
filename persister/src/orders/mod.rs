//! Admitted orders in MySQL: `store.rs` reads and writes them in the batch's transaction,
//! `rules.rs` decides each one (is it within stock? within the per-user limit?).

mod rules;
mod store;

pub use rules::{OrdersOutcome, RejectReason, within_per_user_limit, within_stock};
pub use store::write;
