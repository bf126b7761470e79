//! Request handlers, one file per concern.

pub mod admin_sales;
pub mod health;
pub mod orders;
pub mod purchase;
