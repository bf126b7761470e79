//! Orders as their shoppers see them (with their payment), the check that an order is the caller's and may take a
//! discount, and the discounts reserved on an order.

pub mod discount;
pub mod eligible;
pub mod payment;
pub mod status;

pub use discount::{DiscountMode, OrderDiscount, Reservation};
