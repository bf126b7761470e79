//! `GET /v1/orders/{order_id}` and `GET /v1/me/orders` for shoppers, and what the coupon and
//! points routes share about orders.

use http::StatusCode;
use serde::Serialize;

use crate::app::App;
use crate::auth::Role;
use crate::error::ApiError;
use crate::http::{Request, Response, json_response, next_page, page_query, time_id_cursor};
use crate::metrics::Dependency;
use crate::orders::{self, OrderDiscount, OrderView};

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
    let order = orders::find_for_user(&app.db, &app.redis, app.prefix(), order_id, user)
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

/// Releases a discount's reservation on its order if `holder` holds it (`None`: whoever does).
/// A failure is logged and leaves the room reserved: the order may then take less discount
/// than its amount, never more.
pub async fn release_discount(app: &App, hold: &OrderDiscount, holder: Option<&str>) {
    if let Err(err) = hold
        .release(&app.redis, &app.scripts.order_discount, holder)
        .await
    {
        app.metrics.dependency_error(Dependency::Redis);
        tracing::warn!(error = %err, "releasing a discount reservation failed; it stays reserved");
    }
}

/// The caller's order; anyone else's, and unknown ids, are 404.
pub async fn get(app: &App, req: Request, order_id: &str) -> Result<Response, ApiError> {
    let principal = app.verifier.authenticate(req.headers())?;
    principal.require(Role::Shopper)?;
    if order_id.is_empty() || order_id.len() > 40 {
        return Err(ApiError::NotFound("no such order".into()));
    }
    let order = orders::find_for_user(
        &app.db,
        &app.redis,
        app.prefix(),
        order_id,
        &principal.user_id,
    )
    .await
    .map_err(|err| {
        app.metrics.dependency_error(Dependency::Mysql);
        ApiError::Internal(err)
    })?
    .ok_or_else(|| ApiError::NotFound("no such order".into()))?;
    Ok(json_response(StatusCode::OK, &order))
}

#[derive(Serialize)]
struct Page {
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
}

/// The caller's persisted orders, newest first (`?limit=N&cursor=C`).
pub async fn list_mine(app: &App, req: Request) -> Result<Response, ApiError> {
    let principal = app.verifier.authenticate(req.headers())?;
    principal.require(Role::Shopper)?;
    let (limit, cursor) = page_query(req.uri().query(), 50, 200)?;
    let cursor = cursor.map(time_id_cursor).transpose()?;
    let mut page = orders::list_for_user(&app.db, &principal.user_id, cursor, limit + 1)
        .await
        .map_err(|err| {
            app.metrics.dependency_error(Dependency::Mysql);
            ApiError::Internal(err)
        })?;
    let next_cursor = next_page(&mut page, limit, |o| {
        Some(format!(
            "{}:{}",
            o.admitted_at?.timestamp_millis(),
            o.order_id
        ))
    });
    Ok(json_response(
        StatusCode::OK,
        &Page {
            orders: page,
            next_cursor,
        },
    ))
}
