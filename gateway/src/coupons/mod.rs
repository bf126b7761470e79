//! Coupons: the policies managers create, claiming a coupon, redeeming it on an order and
//! undoing that, and the holder's list.

pub mod admin;
pub mod claims;
pub mod cleanup;
pub mod policy;
pub mod policy_store;
pub mod redeem;
pub mod redemption;
pub mod store;
