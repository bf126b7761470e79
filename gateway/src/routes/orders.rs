//! `GET /v1/orders/{order_id}` and `GET /v1/me/orders` for shoppers, and how a refusal to put
//! a discount on an order is answered (the coupon and points routes share it).

use http::StatusCode;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::{Call, page_query, time_id_cursor};
use crate::http::response::{Response, json_response, list_page};
use crate::orders::eligible::OrderRefusal;
use crate::orders::status::{order_of, orders_of};

fn no_order() -> ApiError {
    ApiError::NotFound("no such order".into())
}

/// The answer to a discount (`what`: "a coupon", "points") the order cannot take.
pub fn refused(what: &str, refusal: OrderRefusal) -> ApiError {
    match refusal {
        OrderRefusal::NotFound => no_order(),
        OrderRefusal::NotEligible { status } => ApiError::conflict(
            "order_not_eligible",
            format!("{what} cannot be applied to a {status} order"),
        ),
        OrderRefusal::ExceedsAmount { amount, applied } => {
            ApiError::discount_exceeds_amount(amount, applied)
        }
    }
}

/// The caller's order; anyone else's, and unknown ids, are 404.
pub async fn get(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let order = order_of(app, &call.caller.user_id, call.param)
        .await?
        .ok_or_else(no_order)?;
    Ok(json_response(StatusCode::OK, &order))
}

/// The caller's persisted orders, newest first (`?limit=N&cursor=C`).
pub async fn list_mine(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let (limit, cursor) = page_query(call.req.uri().query())?;
    let cursor = cursor.map(time_id_cursor).transpose()?;
    let orders = orders_of(app, &call.caller.user_id, cursor, limit + 1).await?;
    Ok(list_page("orders", orders, limit, |o| {
        Some(format!(
            "{}:{}",
            o.admitted_at?.timestamp_millis(),
            o.order_id
        ))
    }))
}
