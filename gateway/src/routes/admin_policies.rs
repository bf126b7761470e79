//! The manager API for coupon policies: create, read with live counters, list, pause/resume/close.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::coupons::policy::{NewPolicy, Policy, PolicyView};
use crate::coupons::policy_store::{self as policies, StatusChange};
use crate::http::error::ApiError;
use crate::http::request::{Call, next_page, page_query, read_json};
use crate::http::response::{Response, json_response};
use crate::metrics::Dependency;

fn not_found() -> ApiError {
    ApiError::NotFound("no such coupon policy".into())
}

/// `POST /v1/admin/coupon-policies` → 201 with the policy.
pub async fn create(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call { req, .. } = call;
    let new: NewPolicy = read_json(req, app.settings.gateway.body_limit_bytes).await?;
    new.validate()?;
    let policy = policies::insert(&app.db, &new)
        .await
        .map_err(|e| app.failed(Dependency::Mysql, e))?;
    policies::load_into_redis(
        &app.redis,
        &app.db,
        &app.scripts.load_policy,
        app.prefix(),
        &policy,
    )
    .await
    .map_err(|err| {
        app.failed(
            Dependency::Redis,
            err.context(
                "policy stored in MySQL but not loaded into Redis; POST /v1/admin/sales/restore",
            ),
        )
    })?;
    tracing::info!(
        policy_id = policy.policy_id,
        total = policy.total_quantity,
        "coupon policy created"
    );
    let view = PolicyView {
        remaining: Some(i64::from(policy.total_quantity)),
        issued: Some(0),
        persisted: policy.persisted,
        policy,
    };
    Ok(json_response(StatusCode::CREATED, &view))
}

/// `GET /v1/admin/coupon-policies/{policy_id}` → the policy with `remaining` and `issued`.
pub async fn get(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        param: policy_id, ..
    } = call;
    let policy_id: u64 = policy_id.parse().map_err(|_| not_found())?;
    view(app, policy_id).await
}

async fn view(app: &App, policy_id: u64) -> Result<Response, ApiError> {
    let policy = policies::find(&app.db, policy_id)
        .await
        .map_err(|e| app.failed(Dependency::Mysql, e))?
        .ok_or_else(not_found)?;
    let (remaining, issued) = policies::live_counters(&app.redis, app.prefix(), policy_id)
        .await
        .map_err(|e| app.failed(Dependency::Redis, e))?;
    Ok(json_response(
        StatusCode::OK,
        &PolicyView {
            persisted: policy.persisted,
            policy,
            remaining,
            issued,
        },
    ))
}

#[derive(Serialize)]
struct Page {
    policies: Vec<Policy>,
    next_cursor: Option<String>,
}

/// `GET /v1/admin/coupon-policies?limit=N&cursor=C` → newest first, keyset pagination.
pub async fn list(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call { req, .. } = call;
    let (limit, cursor) = page_query(req.uri().query(), 50, 200)?;
    let cursor = cursor
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::invalid("cursor: not a cursor from this API"))
        })
        .transpose()?;
    let mut page = policies::list(&app.db, cursor, limit + 1)
        .await
        .map_err(|e| app.failed(Dependency::Mysql, e))?;
    let next_cursor = next_page(&mut page, limit, |p| Some(p.policy_id.to_string()));
    Ok(json_response(
        StatusCode::OK,
        &Page {
            policies: page,
            next_cursor,
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewStatus {
    status: String,
}

/// `PATCH /v1/admin/coupon-policies/{policy_id}` `{"status": "paused" | "active" | "closed"}`.
/// Closing is final.
pub async fn patch(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        param: policy_id,
        ..
    } = call;
    let policy_id: u64 = policy_id.parse().map_err(|_| not_found())?;
    let change: NewStatus = read_json(req, app.settings.gateway.body_limit_bytes).await?;
    if !matches!(change.status.as_str(), "active" | "paused" | "closed") {
        return Err(ApiError::invalid(
            "status: must be \"active\", \"paused\" or \"closed\"",
        ));
    }
    let outcome =
        policies::set_status(&app.redis, &app.db, app.prefix(), policy_id, &change.status)
            .await
            .map_err(ApiError::Internal)?;
    match outcome {
        StatusChange::NotFound => Err(not_found()),
        StatusChange::Closed => Err(ApiError::conflict(
            "policy_closed",
            "the policy is closed; closing is final",
        )),
        StatusChange::Changed => {
            tracing::info!(policy_id, status = %change.status, "coupon policy status changed");
            view(app, policy_id).await
        }
    }
}
