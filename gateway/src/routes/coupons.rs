//! Shoppers' coupon endpoints: claim (one EVALSHA), list mine, redeem on an order (within
//! what is left of its amount), cancel a redemption.

use chrono::DateTime;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::coupons::claims::{self, Claim, ClaimRequest};
use crate::coupons::policy_store as policies;
use crate::coupons::redemption::{self, Change, CouponChange};
use crate::coupons::store::{self, CouponView};
use crate::http::error::ApiError;
use crate::http::request::{
    Call, idempotency_key, next_page, page_query, read_json, time_id_cursor,
};
use crate::http::response::{Response, json_response};
use crate::keys::PolicyKeys;
use crate::metrics::Dependency;
use crate::orders::discount::release_discount;
use crate::orders::eligible::eligible_order;
use crate::orders::{DiscountMode, OrderDiscount, Reservation};
use crate::scripts;

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
pub async fn claim(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        param: policy_id,
        trace_id,
        caller: principal,
        ..
    } = call;
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
    let outcome = claims::claim(&app.redis, &app.scripts.claim_coupon, &request)
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
pub async fn list_mine(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        caller: principal,
        ..
    } = call;
    let (limit, cursor) = page_query(req.uri().query(), 50, 200)?;
    let cursor = cursor.map(time_id_cursor).transpose()?;
    let mut page = store::list_for_user(
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
///
/// The discount is reserved on the order first (`lua/order_discount.lua`, on the sale's hash
/// tag), then the coupon is redeemed with it (`lua/redeem_coupon.lua`, on the policy's): the
/// two live under different hash tags, so no one script may do both. A coupon worth more than
/// what is left of the order's amount gives what is left (as a shop's till would); none left
/// is 409 `discount_exceeds_amount`. A refused redeem gives the reservation back.
pub async fn redeem(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        param: coupon_id,
        trace_id,
        caller: principal,
        ..
    } = call;
    let policy_id = redemption::policy_of(coupon_id).ok_or_else(no_coupon)?;
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
    let hold = OrderDiscount::coupon(app.prefix(), &order.order_id, coupon_id)
        .ok_or_else(|| ApiError::NotFound("no such order".into()))?;
    let token = uuid::Uuid::now_v7().simple().to_string();
    let reservation = hold
        .reserve(
            &app.redis,
            &app.scripts.order_discount,
            &token,
            policy.discount.on(amount),
            amount,
            DiscountMode::Cap,
        )
        .await
        .map_err(|e| app.redis_unavailable("redeem", &e))?;
    // Another request may hold the reservation: the same coupon redeemed on this order at
    // the same moment, or a redemption of it still standing (the redeem then refuses).
    let (discount, owned) = match reservation {
        Reservation::Reserved {
            granted, holder, ..
        } => (granted, holder == token),
        Reservation::Exceeds { total, .. } => {
            return Err(ApiError::discount_exceeds_amount(amount, total));
        }
    };
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    let change = CouponChange {
        keys: &keys,
        coupon_id,
        user_id: &principal.user_id,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
    };
    let outcome = run_change(app, &change, || {
        redemption::redeem(
            &app.redis,
            &app.scripts.redeem_coupon,
            &change,
            &order.order_id,
            discount,
        )
    })
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(failed) => {
            if owned && !failed.may_have_run() {
                release_discount(app, &hold, Some(&token)).await;
            }
            return Err(failed.into_api(app, "redeem"));
        }
    };
    match outcome {
        Change::Done { order_id } => {
            if !owned {
                adopt(app, &hold, &change, &token, discount, amount).await?;
            }
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
        // Redeemed on this very order (by a request racing this one, or before): that
        // redemption counts on the reservation, which stays.
        Change::AlreadyRedeemed { ref order_id } if *order_id == order.order_id => {
            Err(refusal(outcome))
        }
        other => {
            if owned {
                release_discount(app, &hold, Some(&token)).await;
            }
            Err(refusal(other))
        }
    }
}

/// A redeem that succeeded on a reservation another request made takes it over, so that
/// request (refused, say `overloaded`) cannot give it back. If it was given back already and
/// the room has been taken since, the redemption is undone: the order never carries more
/// discount than its amount.
async fn adopt(
    app: &App,
    hold: &OrderDiscount,
    change: &CouponChange<'_>,
    token: &str,
    discount: u64,
    amount: u64,
) -> Result<(), ApiError> {
    let script = &app.scripts.order_discount;
    let reservation = hold
        .reserve(
            &app.redis,
            script,
            token,
            discount,
            amount,
            DiscountMode::Adopt,
        )
        .await;
    let total = match reservation {
        Ok(Reservation::Reserved { .. }) => return Ok(()),
        Ok(Reservation::Exceeds { total, .. }) => total,
        Err(err) => {
            // The reservation most likely stands (held by the request that made it); the
            // redemption is the shopper's either way.
            app.metrics.dependency_error(Dependency::Redis);
            tracing::warn!(coupon_id = change.coupon_id, error = %err, "taking over a discount reservation failed");
            return Ok(());
        }
    };
    tracing::warn!(
        coupon_id = change.coupon_id,
        "redemption lost its reservation to another discount; undoing it"
    );
    match redemption::cancel_redemption(&app.redis, &app.scripts.cancel_redemption, change).await {
        Ok(Change::Done { .. }) => Err(ApiError::discount_exceeds_amount(amount, total)),
        Ok(other) => Err(ApiError::Internal(anyhow::anyhow!(
            "undoing redemption of {} past its order's amount: {other:?}",
            change.coupon_id
        ))),
        Err(err) => Err(app.failed(
            Dependency::Redis,
            anyhow::Error::new(err).context(format!(
                "undoing redemption of {} past its order's amount",
                change.coupon_id
            )),
        )),
    }
}

/// `POST /v1/coupons/{coupon_id}/cancel-redemption` → 200, the coupon `issued` again and its
/// discount's room on the order free.
pub async fn cancel_redemption(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        param: coupon_id,
        trace_id,
        caller: principal,
        ..
    } = call;
    let policy_id = redemption::policy_of(coupon_id).ok_or_else(no_coupon)?;
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    let change = CouponChange {
        keys: &keys,
        coupon_id,
        user_id: &principal.user_id,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
    };
    let outcome = run_change(app, &change, || {
        redemption::cancel_redemption(&app.redis, &app.scripts.cancel_redemption, &change)
    })
    .await
    .map_err(|failed| failed.into_api(app, "cancel"))?;
    match outcome {
        Change::Done { order_id } => {
            // Whoever holds it: the redemption is undone. A retried cancel answers
            // `not_redeemed` and cannot name the order, so a failure here is only logged.
            if let Some(hold) = OrderDiscount::coupon(app.prefix(), &order_id, coupon_id) {
                release_discount(app, &hold, None).await;
            }
            tracing::info!(coupon_id, order_id, "coupon redemption cancelled");
            Ok(json_response(
                StatusCode::OK,
                &json!({ "coupon_id": coupon_id, "status": "issued", "released_from": order_id }),
            ))
        }
        other => Err(refusal(other)),
    }
}

/// Why a redeem or cancel has no outcome.
enum Failed {
    /// Redis did not answer the script.
    Redis(fred::error::Error),
    /// Reloading the coupon from MySQL failed: the script did not run after it.
    Reload(ApiError),
}

impl Failed {
    fn may_have_run(&self) -> bool {
        match self {
            Self::Redis(err) => scripts::may_have_run(err),
            Self::Reload(_) => false,
        }
    }

    fn into_api(self, app: &App, action: &'static str) -> ApiError {
        match self {
            Self::Redis(err) => app.redis_unavailable(action, &err),
            Self::Reload(err) => err,
        }
    }
}

/// Runs a redeem or cancel script; when Redis does not have the coupon but MySQL has it (and
/// it is the caller's), loads it back and runs the script once more.
async fn run_change<F, Fut>(app: &App, change: &CouponChange<'_>, run: F) -> Result<Change, Failed>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Change, fred::error::Error>>,
{
    let outcome = run().await.map_err(Failed::Redis)?;
    if outcome != Change::NotFound {
        return Ok(outcome);
    }
    let stored = store::find(&app.db, change.coupon_id)
        .await
        .map_err(|e| Failed::Reload(app.failed(Dependency::Mysql, e)))?;
    let Some(stored) =
        stored.filter(|c| c.user_id == change.user_id && c.view.status != "rejected")
    else {
        return Ok(Change::NotFound);
    };
    store::load_into_redis(&app.redis, &app.scripts.load_coupon, change.keys, &stored)
        .await
        .map_err(|e| Failed::Reload(app.failed(Dependency::Redis, e)))?;
    tracing::warn!(
        coupon_id = change.coupon_id,
        "coupon reloaded into Redis from MySQL"
    );
    run().await.map_err(Failed::Redis)
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
