//! Request handlers, one file per concern.

pub mod admin_policies;
pub mod admin_sales;
pub mod coupons;
pub mod orders;
pub mod points;
pub mod purchase;
