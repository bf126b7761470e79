//! The manager API for coupon policies: create, read with live counters, list, pause/resume/close.

use http::StatusCode;

use crate::app::App;
use crate::coupons::admin;
use crate::coupons::policy::NewPolicy;
use crate::coupons::policy_store::StatusChange;
use crate::http::error::ApiError;
use crate::http::request::{Call, StatusBody, id_cursor, page_query, read_json};
use crate::http::response::{Response, json_response, list_page};

fn no_policy() -> ApiError {
    ApiError::NotFound("no such coupon policy".into())
}

/// `POST /v1/admin/coupon-policies` → 201 with the policy.
pub async fn create(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let new: NewPolicy = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    let view = admin::create(app, &new).await?;
    Ok(json_response(StatusCode::CREATED, &view))
}

/// `GET /v1/admin/coupon-policies/{policy_id}` → the policy with `remaining` and `issued`.
pub async fn get(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let policy_id: u64 = call.param.parse().map_err(|_| no_policy())?;
    let view = admin::view(app, policy_id).await?.ok_or_else(no_policy)?;
    Ok(json_response(StatusCode::OK, &view))
}

/// `GET /v1/admin/coupon-policies?limit=N&cursor=C` → newest first, keyset pagination.
pub async fn list(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let (limit, cursor) = page_query(call.req.uri().query())?;
    let before = cursor.map(id_cursor).transpose()?;
    let policies = admin::list(app, before, limit + 1).await?;
    Ok(list_page("policies", policies, limit, |p| {
        Some(p.policy_id.to_string())
    }))
}

/// `PATCH /v1/admin/coupon-policies/{policy_id}` `{"status": "paused" | "active" | "closed"}`.
/// Closing is final.
pub async fn patch(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let policy_id: u64 = call.param.parse().map_err(|_| no_policy())?;
    let body: StatusBody = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    match admin::set_status(app, policy_id, &body.status).await? {
        StatusChange::Changed => {
            let view = admin::view(app, policy_id).await?.ok_or_else(no_policy)?;
            Ok(json_response(StatusCode::OK, &view))
        }
        StatusChange::NotFound => Err(no_policy()),
        StatusChange::Closed => Err(ApiError::conflict(
            "policy_closed",
            "the policy is closed; closing is final",
        )),
    }
}
