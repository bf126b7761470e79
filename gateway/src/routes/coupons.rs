//! Shoppers' coupon endpoints: claim (one EVALSHA), list mine, redeem on an order, cancel a
//! redemption.

use chrono::DateTime;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::auth::Role;
use crate::coupons::{self, Change, Claim, ClaimRequest, CouponChange, CouponView};
use crate::error::ApiError;
use crate::http::{
    Request, Response, idempotency_key, json_response, next_page, page_query, read_json,
    time_id_cursor,
};
use crate::keys::PolicyKeys;
use crate::metrics::Dependency;
use crate::policies;
use crate::routes::orders::eligible_order;

fn no_policy() -> ApiError {
    ApiError::NotFound("no such coupon policy".into())
}

fn no_coupon() -> ApiError {
    ApiError::NotFound("no such coupon".into())
}

fn overloaded() -> ApiError {
    ApiError::Overloaded {
        retry_after: 2,
        message: "too many coupon events waiting to be recorded; retry shortly".into(),
    }
}

#[derive(Serialize)]
struct Issued<'a> {
    coupon_id: &'a str,
    policy_id: u64,
    status: &'static str,
    expires_at: Option<DateTime<chrono::Utc>>,
}

/// `POST /v1/coupon-policies/{policy_id}/claims` → 201 with the coupon.
pub async fn claim(
    app: &App,
    req: Request,
    policy_id: &str,
    trace_id: &str,
) -> Result<Response, ApiError> {
    let principal = app.verifier.authenticate(req.headers())?;
    principal.require(Role::Shopper)?;
    let policy_id: u64 = policy_id.parse().map_err(|_| no_policy())?;
    let idempotency_key = idempotency_key(&req)?;
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    let coupon_id = format!("{policy_id}-{}", uuid::Uuid::now_v7().simple());
    let request = ClaimRequest {
        keys: &keys,
        user_id: &principal.user_id,
        coupon_id: &coupon_id,
        trace_id,
        idempotency_key: idempotency_key.as_deref(),
        outbox_max: app.settings.gateway.outbox_max_len,
        idempotency_ttl_secs: app.settings.gateway.idempotency_ttl_secs,
    };
    let outcome = coupons::claim(&app.redis, &app.scripts.claim_coupon, &request)
        .await
        .map_err(|err| app.redis_unavailable("claim", &err))?;
    app.metrics.observe_claim(&outcome);
    match outcome {
        Claim::Issued {
            coupon_id,
            expires_ms,
        } => Ok(json_response(
            StatusCode::CREATED,
            &Issued {
                coupon_id: &coupon_id,
                policy_id,
                status: "issued",
                expires_at: DateTime::from_timestamp_millis(expires_ms),
            },
        )),
        Claim::Exhausted => Err(ApiError::conflict(
            "exhausted",
            "every coupon of this policy has been claimed",
        )),
        Claim::AlreadyClaimed => Err(ApiError::conflict(
            "already_claimed",
            "you already hold as many coupons of this policy as it allows",
        )),
        Claim::NotActive => Err(ApiError::conflict(
            "policy_not_active",
            "the policy is not open for claims (not started, ended, paused or closed)",
        )),
        Claim::NotFound => Err(no_policy()),
        Claim::Overloaded => Err(overloaded()),
    }
}

#[derive(Serialize)]
struct Page {
    coupons: Vec<CouponView>,
    next_cursor: Option<String>,
}

/// `GET /v1/me/coupons` → the caller's coupons, newest first (`?limit=N&cursor=C`).
pub async fn list_mine(app: &App, req: Request) -> Result<Response, ApiError> {
    let principal = app.verifier.authenticate(req.headers())?;
    principal.require(Role::Shopper)?;
    let (limit, cursor) = page_query(req.uri().query(), 50, 200)?;
    let cursor = cursor.map(time_id_cursor).transpose()?;
    let mut page = coupons::list_for_user(
        &app.db,
        &app.redis,
        app.prefix(),
        &principal.user_id,
        cursor,
        limit + 1,
    )
    .await
    .map_err(|e| app.failed(Dependency::Mysql, e))?;
    let next_cursor = next_page(&mut page, limit, |c| {
        Some(format!(
            "{}:{}",
            c.issued_at.timestamp_millis(),
            c.coupon_id
        ))
    });
    Ok(json_response(
        StatusCode::OK,
        &Page {
            coupons: page,
            next_cursor,
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemBody {
    order_id: String,
}

/// Order states a coupon may be applied to.
const REDEEMABLE_ORDERS: [&str; 3] = ["reserved", "confirmed", "paid"];

/// `POST /v1/coupons/{coupon_id}/redeem` `{order_id}` → 200 with the discount.
pub async fn redeem(
    app: &App,
    req: Request,
    coupon_id: &str,
    trace_id: &str,
) -> Result<Response, ApiError> {
    let principal = app.verifier.authenticate(req.headers())?;
    principal.require(Role::Shopper)?;
    let policy_id = coupons::policy_of(coupon_id).ok_or_else(no_coupon)?;
    let body: RedeemBody = read_json(req, app.settings.gateway.body_limit_bytes).await?;
    if body.order_id.is_empty() || body.order_id.len() > 64 {
        return Err(ApiError::invalid("order_id: must have 1 to 64 characters"));
    }
    let order = eligible_order(
        app,
        &principal.user_id,
        &body.order_id,
        &REDEEMABLE_ORDERS,
        "a coupon",
    )
    .await?;
    let policy = policies::find(&app.db, policy_id)
        .await
        .map_err(|e| app.failed(Dependency::Mysql, e))?
        .ok_or_else(no_coupon)?;
    let amount = order.amount.unwrap_or(0);
    if let Some(minimum) = policy.min_order_amount.filter(|&m| amount < m) {
        return Err(ApiError::conflict(
            "below_min_order_amount",
            format!("this coupon needs an order of at least {minimum}; the order is {amount}"),
        ));
    }
    let discount = policy.discount.on(amount);
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    let change = CouponChange {
        keys: &keys,
        coupon_id,
        user_id: &principal.user_id,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
    };
    let outcome = run_change(app, &change, "redeem", || {
        coupons::redeem(
            &app.redis,
            &app.scripts.redeem_coupon,
            &change,
            &order.order_id,
            discount,
        )
    })
    .await?;
    match outcome {
        Change::Done { order_id } => {
            tracing::info!(coupon_id, order_id, discount, "coupon redeemed");
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "coupon_id": coupon_id,
                    "status": "redeemed",
                    "order_id": order_id,
                    "order_amount": amount,
                    "discount": discount,
                }),
            ))
        }
        other => Err(refusal(other)),
    }
}

/// `POST /v1/coupons/{coupon_id}/cancel-redemption` → 200, the coupon `issued` again.
pub async fn cancel_redemption(
    app: &App,
    req: Request,
    coupon_id: &str,
    trace_id: &str,
) -> Result<Response, ApiError> {
    let principal = app.verifier.authenticate(req.headers())?;
    principal.require(Role::Shopper)?;
    let policy_id = coupons::policy_of(coupon_id).ok_or_else(no_coupon)?;
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    let change = CouponChange {
        keys: &keys,
        coupon_id,
        user_id: &principal.user_id,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
    };
    let outcome = run_change(app, &change, "cancel", || {
        coupons::cancel_redemption(&app.redis, &app.scripts.cancel_redemption, &change)
    })
    .await?;
    match outcome {
        Change::Done { order_id } => {
            tracing::info!(coupon_id, order_id, "coupon redemption cancelled");
            Ok(json_response(
                StatusCode::OK,
                &json!({ "coupon_id": coupon_id, "status": "issued", "released_from": order_id }),
            ))
        }
        other => Err(refusal(other)),
    }
}

/// Runs a redeem or cancel script; when Redis does not have the coupon but MySQL has it (and
/// it is the caller's), loads it back and runs the script once more.
async fn run_change<F, Fut>(
    app: &App,
    change: &CouponChange<'_>,
    action: &'static str,
    run: F,
) -> Result<Change, ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Change, fred::error::Error>>,
{
    let outcome = run().await.map_err(|e| app.redis_unavailable(action, &e))?;
    if outcome != Change::NotFound {
        return Ok(outcome);
    }
    let stored = coupons::find(&app.db, change.coupon_id)
        .await
        .map_err(|e| app.failed(Dependency::Mysql, e))?;
    let Some(stored) =
        stored.filter(|c| c.user_id == change.user_id && c.view.status != "rejected")
    else {
        return Ok(Change::NotFound);
    };
    coupons::load_into_redis(&app.redis, &app.scripts.load_coupon, change.keys, &stored)
        .await
        .map_err(|e| app.failed(Dependency::Redis, e))?;
    tracing::warn!(
        coupon_id = change.coupon_id,
        "coupon reloaded into Redis from MySQL"
    );
    run().await.map_err(|e| app.redis_unavailable(action, &e))
}

fn refusal(change: Change) -> ApiError {
    match change {
        Change::AlreadyRedeemed { .. } => {
            ApiError::conflict("already_redeemed", "the coupon is already redeemed")
        }
        Change::NotRedeemed => ApiError::conflict("not_redeemed", "the coupon is not redeemed"),
        Change::Expired => ApiError::conflict("coupon_expired", "the coupon has expired"),
        Change::Overloaded => overloaded(),
        Change::NotFound | Change::Done { .. } => no_coupon(),
    }
}
