//! The check that coupons and points share before they touch an order: it is the caller's, and
//! its status takes the discount.

use crate::app::App;
use crate::failure::Failure;
use crate::orders::status::{OrderView, find_for_user};

/// Why an order cannot take a discount (a coupon or points).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRefusal {
    /// Unknown, or someone else's.
    NotFound,
    /// Its status does not take the discount.
    NotEligible {
        /// The order's status.
        status: String,
    },
    /// The order's discounts would sum past its amount.
    ExceedsAmount {
        /// The order's amount.
        amount: u64,
        /// What coupons and points already take off it.
        applied: u64,
    },
}

/// The order, or why it cannot take the discount.
#[derive(Debug, Clone)]
pub enum Eligible {
    /// The caller's order, in a status that takes the discount (boxed: a view is large).
    Order(Box<OrderView>),
    /// Not one the discount may go on.
    Refused(OrderRefusal),
}

/// The order `order_id` if it is `user`'s and its status is one of `allowed`.
pub async fn eligible(
    app: &App,
    user: &str,
    order_id: &str,
    allowed: &[&str],
) -> Result<Eligible, Failure> {
    let order = find_for_user(&app.db, &app.redis, app.prefix(), order_id, user).await?;
    Ok(match order {
        None => Eligible::Refused(OrderRefusal::NotFound),
        Some(order) if allowed.contains(&order.status.as_str()) => Eligible::Order(Box::new(order)),
        Some(order) => Eligible::Refused(OrderRefusal::NotEligible {
            status: order.status,
        }),
    })
}
