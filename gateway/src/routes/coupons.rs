//! Shoppers' coupon endpoints: claim (one EVALSHA), list mine, redeem on an order (within
//! what is left of its amount), cancel a redemption.

use chrono::DateTime;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::coupons::claims::{Claim, claim_coupon};
use crate::coupons::redeem::{self, Redeem};
use crate::coupons::redemption::{CouponAction, Redemption, policy_of};
use crate::coupons::store::coupons_of;
use crate::http::error::{ApiError, Overload};
use crate::http::request::{Call, idempotency_key, page_query, read_json, time_id_cursor};
use crate::http::response::{Response, json_response, list_page};
use crate::keys::PolicyKeys;
use crate::limits::Client;
use crate::routes::orders::refused;
use flashgate_config::RateClass;

fn no_policy() -> ApiError {
    ApiError::NotFound("no such coupon policy".into())
}

fn no_coupon() -> ApiError {
    ApiError::NotFound("no such coupon".into())
}

fn overloaded() -> ApiError {
    ApiError::overloaded(Overload::Backlog("coupon events"))
}

/// The 201 answer to a claim.
#[derive(Serialize)]
struct Issued<'a> {
    coupon_id: &'a str,
    policy_id: u64,
    status: &'static str,
    expires_at: Option<DateTime<chrono::Utc>>,
}

/// `POST /v1/coupon-policies/{policy_id}/claims` → 201 with the coupon.
pub async fn claim(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let policy_id: u64 = call.param.parse().map_err(|_| no_policy())?;
    let idempotency_key = idempotency_key(&call.req)?;
    let client = call.req.extensions().get::<Client>().copied();
    let outcome = claim_coupon(
        app,
        policy_id,
        &call.caller.user_id,
        idempotency_key.as_deref(),
        call.trace_id,
        client,
    )
    .await?;
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
        Claim::RateLimited { key, retry_us } => Err(ApiError::RateLimited(app.limiter.refusal(
            RateClass::Claim,
            key,
            retry_us,
        ))),
    }
}

/// `GET /v1/me/coupons` → the caller's coupons, newest first (`?limit=N&cursor=C`).
pub async fn list_mine(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let (limit, cursor) = page_query(call.req.uri().query())?;
    let cursor = cursor.map(time_id_cursor).transpose()?;
    let coupons = coupons_of(app, &call.caller.user_id, cursor, limit + 1).await?;
    Ok(list_page("coupons", coupons, limit, |c| {
        Some(format!(
            "{}:{}",
            c.issued_at.timestamp_millis(),
            c.coupon_id
        ))
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemBody {
    order_id: String,
}

/// `POST /v1/coupons/{coupon_id}/redeem` `{order_id}` → 200 with the discount (see
/// `coupons/redeem.rs`: a coupon worth more than what is left of the order gives what is
/// left; none left is 409 `discount_exceeds_amount`).
pub async fn redeem(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let coupon_id = call.param;
    let policy_id = policy_of(coupon_id).ok_or_else(no_coupon)?;
    let body: RedeemBody = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    let action = action(app, &keys, coupon_id, &call.caller.user_id, call.trace_id);
    match redeem::redeem(app, &action, policy_id, &body.order_id).await? {
        Redeem::Redeemed {
            order_id,
            order_amount,
            discount,
        } => Ok(json_response(
            StatusCode::OK,
            &json!({
                "coupon_id": coupon_id,
                "status": "redeemed",
                "order_id": order_id,
                "order_amount": order_amount,
                "discount": discount,
            }),
        )),
        Redeem::Order(refusal) => Err(refused("a coupon", refusal)),
        Redeem::NoSuchCoupon => Err(no_coupon()),
        Redeem::BelowMinimum { minimum, amount } => Err(ApiError::conflict(
            "below_min_order_amount",
            format!("this coupon needs an order of at least {minimum}; the order is {amount}"),
        )),
        Redeem::Refused(refusal) => Err(refused_redemption(refusal)),
    }
}

/// `POST /v1/coupons/{coupon_id}/cancel-redemption` → 200, the coupon `issued` again and its
/// discount's room on the order free.
pub async fn cancel_redemption(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let coupon_id = call.param;
    let policy_id = policy_of(coupon_id).ok_or_else(no_coupon)?;
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    let action = action(app, &keys, coupon_id, &call.caller.user_id, call.trace_id);
    match redeem::cancel(app, &action).await? {
        Redemption::Done { order_id } => Ok(json_response(
            StatusCode::OK,
            &json!({ "coupon_id": coupon_id, "status": "issued", "released_from": order_id }),
        )),
        other => Err(refused_redemption(other)),
    }
}

fn action<'a>(
    app: &App,
    keys: &'a PolicyKeys,
    coupon_id: &'a str,
    user_id: &'a str,
    trace_id: &'a str,
) -> CouponAction<'a> {
    CouponAction {
        keys,
        coupon_id,
        user_id,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
    }
}

/// The answer to a redeem or cancel the script refused.
fn refused_redemption(redemption: Redemption) -> ApiError {
    match redemption {
        Redemption::AlreadyRedeemed { .. } => {
            ApiError::conflict("already_redeemed", "the coupon is already redeemed")
        }
        Redemption::NotRedeemed => ApiError::conflict("not_redeemed", "the coupon is not redeemed"),
        Redemption::Expired => ApiError::conflict("coupon_expired", "the coupon has expired"),
        Redemption::Overloaded => overloaded(),
        Redemption::NotFound | Redemption::Done { .. } => no_coupon(),
    }
}
