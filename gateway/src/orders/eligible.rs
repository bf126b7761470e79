//! The check that coupons and points share before they touch an order: it is the caller's, and
//! its status takes the discount.

use crate::app::App;
use crate::http::error::ApiError;
use crate::metrics::Dependency;
use crate::orders::status::{OrderView, find_for_user};

/// The order `order_id` of `user` for another action (`what`: "a coupon", "points"): 404 when
/// it is unknown or someone else's, 409 `order_not_eligible` when its status is not in
/// `allowed`.
pub async fn eligible_order(
    app: &App,
    user: &str,
    order_id: &str,
    allowed: &[&str],
    what: &str,
) -> Result<OrderView, ApiError> {
    let order = find_for_user(&app.db, &app.redis, app.prefix(), order_id, user)
        .await
        .map_err(|e| app.failed(Dependency::Mysql, e))?
        .ok_or_else(|| ApiError::NotFound("no such order".into()))?;
    if allowed.contains(&order.status.as_str()) {
        Ok(order)
    } else {
        Err(ApiError::conflict(
            "order_not_eligible",
            format!("{what} cannot be applied to a {} order", order.status),
        ))
    }
}
