//! Redeeming a coupon on an order, and undoing that.
//!
//! The discount is reserved on the order first (`lua/order_discount.lua`, on the sale's hash
//! tag), then the coupon is redeemed with it (`lua/redeem_coupon.lua`, on the policy's): the
//! two live under different hash tags, so no one script may do both. A coupon worth more than
//! what is left of the order's amount gives what is left (as a shop's till would); none left
//! is a refusal. A refused redeem gives the reservation back.

use flashgate_events::ids::{self, ORDER_ID_MAX_LEN};

use crate::app::App;
use crate::coupons::redemption::{self, CouponAction, Redemption};
use crate::coupons::{policy_store, store};
use crate::failure::{Failure, Invalid};
use crate::metrics::Dependency;
use crate::orders::discount::{DiscountMode, OrderDiscount, Reservation, release_discount};
use crate::orders::eligible::{Eligible, OrderRefusal, eligible};
use crate::scripts;

/// Order states a coupon may be applied to.
const REDEEMABLE_ORDERS: [&str; 3] = ["reserved", "confirmed", "paid"];

/// What a redeem came to.
#[derive(Debug)]
pub enum Redeem {
    /// Redeemed on the order, taking `discount` off it.
    Redeemed {
        /// The order.
        order_id: String,
        /// The order's amount.
        order_amount: u64,
        /// What the coupon takes off it.
        discount: u64,
    },
    /// The order cannot take the coupon.
    Order(OrderRefusal),
    /// The coupon's policy is gone.
    NoSuchCoupon,
    /// The order's amount is below the policy's minimum.
    BelowMinimum {
        /// The policy's minimum.
        minimum: u64,
        /// The order's amount.
        amount: u64,
    },
    /// The redeem script refused (already redeemed, expired, not the caller's, overloaded).
    Refused(Redemption),
}

/// Redeems the caller's coupon (`action`) of `policy_id` on `order_id`.
pub async fn redeem(
    app: &App,
    action: &CouponAction<'_>,
    policy_id: u64,
    order_id: &str,
) -> Result<Redeem, Failure> {
    if !ids::fits(order_id, ORDER_ID_MAX_LEN) {
        return Err(Invalid::new(format!(
            "order_id: must have 1 to {ORDER_ID_MAX_LEN} characters"
        ))
        .into());
    }
    let order = match eligible(app, action.user_id, order_id, &REDEEMABLE_ORDERS).await? {
        Eligible::Order(order) => order,
        Eligible::Refused(refusal) => return Ok(Redeem::Order(refusal)),
    };
    let Some(policy) = policy_store::find(&app.db, policy_id)
        .await
        .map_err(Failure::Mysql)?
    else {
        return Ok(Redeem::NoSuchCoupon);
    };
    let amount = order.amount.unwrap_or(0);
    if let Some(minimum) = policy.min_order_amount.filter(|&m| amount < m) {
        return Ok(Redeem::BelowMinimum { minimum, amount });
    }
    let Some(hold) = OrderDiscount::coupon(app.prefix(), &order.order_id, action.coupon_id) else {
        return Ok(Redeem::Order(OrderRefusal::NotFound));
    };
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
        .map_err(Failure::unreachable("redeem"))?;
    // Another request may hold the reservation: the same coupon redeemed on this order at
    // the same moment, or a redemption of it still standing (the redeem then refuses).
    let (discount, owned) = match reservation {
        Reservation::Reserved {
            granted, holder, ..
        } => (granted, holder == token),
        Reservation::Exceeds { total, .. } => {
            return Ok(Redeem::Order(OrderRefusal::ExceedsAmount {
                amount,
                applied: total,
            }));
        }
        Reservation::Closed { status } => {
            return Ok(Redeem::Order(OrderRefusal::NotEligible { status }));
        }
    };
    let outcome = run(app, action, || {
        redemption::redeem(
            &app.redis,
            &app.scripts.redeem_coupon,
            action,
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
            return Err(failed.into_failure("redeem"));
        }
    };
    match outcome {
        Redemption::Done { order_id } => {
            if !owned
                && let Some(refusal) = adopt(app, &hold, action, &token, discount, amount).await?
            {
                return Ok(Redeem::Order(refusal));
            }
            tracing::info!(
                coupon_id = action.coupon_id,
                order_id,
                discount,
                "coupon redeemed"
            );
            Ok(Redeem::Redeemed {
                order_id,
                order_amount: amount,
                discount,
            })
        }
        // Redeemed on this very order (by a request racing this one, or before): that
        // redemption counts on the reservation, which stays.
        Redemption::AlreadyRedeemed { ref order_id } if *order_id == order.order_id => {
            Ok(Redeem::Refused(outcome))
        }
        other => {
            if owned {
                release_discount(app, &hold, Some(&token)).await;
            }
            Ok(Redeem::Refused(other))
        }
    }
}

/// A redeem that succeeded on a reservation another request made takes it over, so that
/// request (refused, say `overloaded`) cannot give it back. If it was given back already and
/// the room has been taken since, the redemption is undone (the refusal is returned): the
/// order never carries more discount than its amount.
async fn adopt(
    app: &App,
    hold: &OrderDiscount,
    action: &CouponAction<'_>,
    token: &str,
    discount: u64,
    amount: u64,
) -> Result<Option<OrderRefusal>, Failure> {
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
    let refusal = match reservation {
        Ok(Reservation::Reserved { .. }) => return Ok(None),
        Ok(Reservation::Exceeds { total, .. }) => OrderRefusal::ExceedsAmount {
            amount,
            applied: total,
        },
        Ok(Reservation::Closed { status }) => OrderRefusal::NotEligible { status },
        Err(err) => {
            // The reservation most likely stands (held by the request that made it); the
            // redemption is the shopper's either way.
            app.metrics.dependency_error(Dependency::Redis);
            tracing::warn!(coupon_id = action.coupon_id, error = %err, "taking over a discount reservation failed");
            return Ok(None);
        }
    };
    tracing::warn!(
        coupon_id = action.coupon_id,
        "redemption lost its reservation (to another discount, or its order ended); undoing it"
    );
    match redemption::cancel_redemption(&app.redis, &app.scripts.cancel_redemption, action).await {
        Ok(Redemption::Done { .. }) => Ok(Some(refusal)),
        Ok(other) => Err(Failure::Internal(anyhow::anyhow!(
            "undoing redemption of {} past its order's amount: {other:?}",
            action.coupon_id
        ))),
        Err(err) => Err(Failure::Redis(anyhow::Error::new(err).context(format!(
            "undoing redemption of {} past its order's amount",
            action.coupon_id
        )))),
    }
}

/// Undoes the caller's redemption of a coupon: it is `issued` again, and its discount's room on
/// the order is free.
pub async fn cancel(app: &App, action: &CouponAction<'_>) -> Result<Redemption, Failure> {
    let outcome = run(app, action, || {
        redemption::cancel_redemption(&app.redis, &app.scripts.cancel_redemption, action)
    })
    .await
    .map_err(|failed| failed.into_failure("cancel"))?;
    if let Redemption::Done { order_id } = &outcome {
        // Whoever holds it: the redemption is undone. A retried cancel answers `not_redeemed`
        // and cannot name the order, so a failure here is only logged.
        if let Some(hold) = OrderDiscount::coupon(app.prefix(), order_id, action.coupon_id) {
            release_discount(app, &hold, None).await;
        }
        tracing::info!(
            coupon_id = action.coupon_id,
            order_id,
            "coupon redemption cancelled"
        );
    }
    Ok(outcome)
}

/// Why a redeem or cancel script has no outcome.
enum Failed {
    /// Redis did not answer the script.
    Redis(fred::error::Error),
    /// Reloading the coupon from MySQL failed: the script did not run after it.
    Reload(Failure),
}

impl Failed {
    fn may_have_run(&self) -> bool {
        match self {
            Self::Redis(err) => scripts::may_have_run(err),
            Self::Reload(_) => false,
        }
    }

    fn into_failure(self, action: &'static str) -> Failure {
        match self {
            Self::Redis(source) => Failure::Unreachable { action, source },
            Self::Reload(failure) => failure,
        }
    }
}

/// Runs a redeem or cancel script; when Redis does not have the coupon but MySQL has it (and
/// it is the caller's), loads it back and runs the script once more.
async fn run<F, Fut>(app: &App, action: &CouponAction<'_>, script: F) -> Result<Redemption, Failed>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Redemption, fred::error::Error>>,
{
    let outcome = script().await.map_err(Failed::Redis)?;
    if outcome != Redemption::NotFound {
        return Ok(outcome);
    }
    let stored = store::find(&app.db, action.coupon_id)
        .await
        .map_err(|e| Failed::Reload(Failure::Mysql(e)))?;
    let Some(stored) =
        stored.filter(|c| c.user_id == action.user_id && c.view.status != "rejected")
    else {
        return Ok(Redemption::NotFound);
    };
    store::load_into_redis(&app.redis, &app.scripts.load_coupon, action.keys, &stored)
        .await
        .map_err(|e| Failed::Reload(Failure::Redis(e)))?;
    tracing::warn!(
        coupon_id = action.coupon_id,
        "coupon reloaded into Redis from MySQL"
    );
    script().await.map_err(Failed::Redis)
}
