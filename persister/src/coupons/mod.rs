//! Coupon events in MySQL: `store.rs` reads and writes coupons in the batch's transaction,
//! `rules.rs` decides (may this coupon be issued? is this change newer than the stored one?).

mod rules;
mod store;

pub use rules::{CouponChange, CouponsOutcome, can_issue, is_newer};
pub use store::write;
