//! The waiting room of a queued sale: shoppers join before the start, a verifiable draw
//! (`flashgate_events::draw`) orders them at the start, the admitter lets them in at the
//! sale's rate, and each admitted shopper gets a signed pass the purchase presents.
//!
//! `spec.rs` holds what a manager sets and sees, `store.rs` its MySQL part (settings, seed,
//! the published draw), `room.rs` its Redis part (one script per action), `admitter.rs` the
//! tick every gateway runs, `pass.rs` the pass.

pub mod admitter;
pub mod keys;
pub mod pass;
pub mod room;
pub mod spec;
pub mod store;
