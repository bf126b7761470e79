//! `GET /v1/orders/{order_id}` and `GET /v1/me/orders` for shoppers.

use http::StatusCode;
use serde::Serialize;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::{Call, next_page, page_query, time_id_cursor};
use crate::http::response::{Response, json_response};
use crate::metrics::Dependency;
use crate::orders::status::{OrderView, find_for_user, list_for_user};

/// The caller's order; anyone else's, and unknown ids, are 404.
pub async fn get(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        param: order_id,
        caller: principal,
        ..
    } = call;
    if order_id.is_empty() || order_id.len() > 40 {
        return Err(ApiError::NotFound("no such order".into()));
    }
    let order = find_for_user(
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
pub async fn list_mine(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        caller: principal,
        ..
    } = call;
    let (limit, cursor) = page_query(req.uri().query(), 50, 200)?;
    let cursor = cursor.map(time_id_cursor).transpose()?;
    let mut page = list_for_user(&app.db, &principal.user_id, cursor, limit + 1)
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
