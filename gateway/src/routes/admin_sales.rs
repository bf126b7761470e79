//! The manager API for sales: create, read with live counters, list, pause or resume, and
//! restore into Redis.

use http::StatusCode;
use serde_json::json;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::{Call, id_cursor, page_query, read_json};
use crate::http::response::{Response, json_response, list_page};
use crate::sales::admin;
use crate::sales::sale::{NewSale, SalePatch, SaleView};

fn no_sale() -> ApiError {
    ApiError::NotFound("no such sale".into())
}

/// `POST /v1/admin/sales` → 201 with the sale.
pub async fn create(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let new: NewSale = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    if new.queue.is_some() && app.queue_pass.is_none() {
        return Err(ApiError::conflict(
            "queue_unavailable",
            "queued sales need a pass secret: set queue.pass_secret (or an HS256 \
             gateway.jwt.secret to derive it from)",
        ));
    }
    let view = admin::create(app, &new).await?;
    Ok(json_response(StatusCode::CREATED, &view))
}

/// `GET /v1/admin/sales/{sale_id}` → the sale with `remaining` and `admitted`.
pub async fn get(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let sale_id: u64 = call.param.parse().map_err(|_| no_sale())?;
    let view = admin::view(app, sale_id).await?.ok_or_else(no_sale)?;
    Ok(json_response(StatusCode::OK, &view))
}

/// `GET /v1/admin/sales?limit=N&cursor=C` → newest first, keyset pagination.
pub async fn list(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let (limit, cursor) = page_query(call.req.uri().query())?;
    let before = cursor.map(id_cursor).transpose()?;
    let sales = admin::list(app, before, limit + 1).await?;
    Ok(list_page("sales", sales, limit, |s| {
        Some(s.sale_id.to_string())
    }))
}

/// `PATCH /v1/admin/sales/{sale_id}` `{"status": "paused" | "active", "queue":
/// {"admit_per_second": N, "paused": bool}}` (either or both) → the sale.
pub async fn patch(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let sale_id: u64 = call.param.parse().map_err(|_| no_sale())?;
    let body: SalePatch = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    // Both checked before either is applied: a bad status must not leave the queue changed.
    if let Some(status) = &body.status
        && !matches!(status.as_str(), "active" | "paused")
    {
        return Err(ApiError::invalid(
            "status: must be \"active\" or \"paused\"",
        ));
    }
    if let Some(queue) = &body.queue {
        queue.validate()?;
    }
    let mut view: Option<SaleView> = None;
    if let Some(queue) = &body.queue {
        view = Some(
            admin::change_queue(app, sale_id, queue)
                .await?
                .ok_or_else(no_sale)?,
        );
    }
    if let Some(status) = &body.status {
        view = Some(
            admin::set_status(app, sale_id, status)
                .await?
                .ok_or_else(no_sale)?,
        );
    }
    let view = view.ok_or_else(|| ApiError::invalid("give status, queue, or both"))?;
    Ok(json_response(StatusCode::OK, &view))
}

/// `POST /v1/admin/sales/restore` → loads every open sale and live coupon policy that Redis
/// lacks from MySQL.
pub async fn restore(app: &App, _call: Call<'_>) -> Result<Response, ApiError> {
    let (restored, restored_policies) = crate::restore::restore(app).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "restored": restored, "restored_policies": restored_policies }),
    ))
}
