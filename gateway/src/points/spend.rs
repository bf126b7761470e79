//! Spending points on an order, within what is left of its amount.
//!
//! The points are reserved on the order first (`lua/order_discount.lua`, on the sale's hash
//! tag), then spent (`lua/points_use.lua`, on the bucket's): no one script may touch both. The
//! use's txid is the reservation's reference and its holder.

use flashgate_events::ids::{self, ORDER_ID_MAX_LEN};
use fred::prelude::KeysInterface;

use crate::app::App;
use crate::failure::{Failure, Invalid};
use crate::orders::discount::{DiscountMode, OrderDiscount, Reservation, release_discount};
use crate::orders::eligible::{Eligible, OrderRefusal, eligible};
use crate::points::actions::{self, Cancel, CancelRequest, Use, UseRequest};
use crate::points::cache::{self, PointsError, UserPoints};
use crate::scripts;

/// Most points one use may spend.
pub const MAX_USE: u64 = 1_000_000_000_000;

/// Order states points may pay for.
const PAYABLE_ORDERS: [&str; 2] = ["reserved", "confirmed"];

/// How often a use or cancel rebuilds a missing cache before giving up.
pub(crate) const MISS_RETRIES: u32 = 3;

/// One use of points a shopper asks for.
#[derive(Debug, Clone)]
pub struct PointsUse<'a> {
    /// Whose points.
    pub user_id: &'a str,
    /// How many.
    pub amount: u64,
    /// The order they pay for.
    pub order_id: &'a str,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<&'a str>,
    /// Trace id of the request, carried into the event.
    pub trace_id: &'a str,
}

/// What a use came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// Spent (now, or by the earlier request with the same key).
    Used {
        /// The use's txid (to cancel it).
        txid: String,
        /// The order paid for.
        order_id: String,
        /// The balance after it.
        balance: i64,
    },
    /// The order cannot take the points.
    Order(OrderRefusal),
    /// Fewer points than asked for.
    Insufficient {
        /// The balance.
        balance: i64,
    },
    /// The bucket's outbox is over its bound.
    Overloaded,
    /// The idempotency key was used with another request.
    KeyReused,
}

/// Spends the caller's points on their order.
pub async fn spend(app: &App, asked: &PointsUse<'_>) -> Result<Spend, Failure> {
    if !(1..=MAX_USE).contains(&asked.amount) {
        return Err(Invalid::new(format!("amount: must be between 1 and {MAX_USE}")).into());
    }
    if !ids::fits(asked.order_id, ORDER_ID_MAX_LEN) {
        return Err(Invalid::new(format!(
            "order_id: must have 1 to {ORDER_ID_MAX_LEN} characters"
        ))
        .into());
    }
    let order = match eligible(app, asked.user_id, asked.order_id, &PAYABLE_ORDERS).await? {
        Eligible::Order(order) => order,
        Eligible::Refused(refusal) => return Ok(Spend::Order(refusal)),
    };
    let amount = order.amount.unwrap_or(0);
    let user = UserPoints::new(app.prefix(), asked.user_id);
    let txid = format!("use-{}", uuid::Uuid::now_v7().simple());
    let Some(hold) = OrderDiscount::points(app.prefix(), &order.order_id, &txid) else {
        return Ok(Spend::Order(OrderRefusal::NotFound));
    };
    let request = UseRequest {
        user: &user,
        amount: asked.amount,
        order_id: &order.order_id,
        txid: &txid,
        trace_id: asked.trace_id,
        idempotency_key: asked.idempotency_key,
        outbox_max: app.settings.gateway.outbox_max_len,
        idempotency_ttl_secs: app.settings.gateway.idempotency_ttl_secs,
        record_ttl_secs: app.settings.points.use_record_ttl_secs,
    };
    let reserved = hold
        .reserve(
            &app.redis,
            &app.scripts.order_discount,
            &txid,
            asked.amount,
            amount,
            DiscountMode::Exact,
        )
        .await
        .map_err(Failure::unreachable("points use"))?;
    let reserved = match reserved {
        Reservation::Reserved { .. } => true,
        // A retry of a use made before (same Idempotency-Key) must still get its first
        // answer, though that use may be what fills the order: the script replays it.
        Reservation::Exceeds { total, .. } => {
            if !has_stored_answer(app, &user, asked.idempotency_key).await? {
                return Ok(Spend::Order(OrderRefusal::ExceedsAmount {
                    amount,
                    applied: total,
                }));
            }
            false
        }
        Reservation::Closed { status } => {
            if !has_stored_answer(app, &user, asked.idempotency_key).await? {
                return Ok(Spend::Order(OrderRefusal::NotEligible { status }));
            }
            false
        }
    };
    let outcome = match run(app, &request).await {
        Ok(outcome) => outcome,
        Err(failed) => {
            if reserved && !failed.may_have_run {
                release_discount(app, &hold, Some(&txid)).await;
            }
            return Err(failed.failure);
        }
    };
    match &outcome {
        Use::Used { txid: used, .. } if *used == txid => {
            if !reserved {
                // The stored answer expired between the look and the use, which spent anew
                // on an order without room: give the points back.
                return undo_unreserved_use(app, &user, &txid, asked.trace_id, amount).await;
            }
        }
        // Refused, or the replay of an earlier use (which holds its own reservation).
        _ => {
            if reserved {
                release_discount(app, &hold, Some(&txid)).await;
            }
        }
    }
    Ok(match outcome {
        Use::Used { txid, balance } => Spend::Used {
            txid,
            order_id: order.order_id,
            balance,
        },
        Use::Insufficient { balance } => Spend::Insufficient { balance },
        Use::Overloaded => Spend::Overloaded,
        Use::KeyReused => Spend::KeyReused,
        Use::Miss => return Err(cache_kept_disappearing()),
    })
}

/// A cache dropped again after each rebuild: the persister and this gateway raced, no
/// dependency failed.
pub(crate) fn cache_kept_disappearing() -> Failure {
    PointsError::Race("the point cache kept disappearing".into()).into()
}

/// A use that did not answer, and whether the script may have run.
struct SpendFailed {
    failure: Failure,
    may_have_run: bool,
}

/// Runs the use script, rebuilding a missing cache up to [`MISS_RETRIES`] times.
async fn run(app: &App, request: &UseRequest<'_>) -> Result<Use, SpendFailed> {
    let mut outcome = Use::Miss;
    for _ in 0..MISS_RETRIES {
        outcome = actions::spend(&app.redis, &app.scripts.points_use, request)
            .await
            .map_err(|source| SpendFailed {
                may_have_run: scripts::may_have_run(&source),
                failure: Failure::Unreachable {
                    action: "points use",
                    source,
                },
            })?;
        if outcome != Use::Miss {
            break;
        }
        cache::rebuild(app, request.user)
            .await
            .map_err(|err| SpendFailed {
                // The use script answered `miss` and did not run again.
                failure: err.into(),
                may_have_run: false,
            })?;
    }
    Ok(outcome)
}

/// Whether Redis holds an answer stored under the caller's idempotency key for points.
async fn has_stored_answer(
    app: &App,
    user: &UserPoints<'_>,
    key: Option<&str>,
) -> Result<bool, Failure> {
    let Some(key) = key else {
        return Ok(false);
    };
    app.redis
        .exists(user.keys.idempotency(user.user_id, key))
        .await
        .map(|n: u32| n > 0)
        .map_err(Failure::unreachable("points use"))
}

/// Gives back a use that was spent without room on its order; the shopper is refused.
async fn undo_unreserved_use(
    app: &App,
    user: &UserPoints<'_>,
    use_txid: &str,
    trace_id: &str,
    amount: u64,
) -> Result<Spend, Failure> {
    tracing::warn!(
        use_txid,
        "a use spent past its order's amount; giving it back"
    );
    let refund_txid = flashgate_events::refund_txid(use_txid).unwrap_or_default();
    let request = CancelRequest {
        user,
        use_txid,
        refund_txid: &refund_txid,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
        record_ttl_secs: app.settings.points.use_record_ttl_secs,
        from_mysql: None,
    };
    match actions::cancel(&app.redis, &app.scripts.points_cancel, &request).await {
        Ok(Cancel::Cancelled { .. } | Cancel::AlreadyCancelled { .. }) => {
            Ok(Spend::Order(OrderRefusal::ExceedsAmount {
                amount,
                applied: amount,
            }))
        }
        Ok(other) => Err(Failure::Internal(anyhow::anyhow!(
            "giving back {use_txid}, spent past its order's amount: {other:?}"
        ))),
        Err(err) => Err(Failure::Redis(anyhow::Error::new(err).context(format!(
            "giving back {use_txid}, spent past its order's amount"
        )))),
    }
}
