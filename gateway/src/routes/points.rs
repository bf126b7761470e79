//! Shoppers' points: the balance, the ledger's history, spending on an order (within what is
//! left of its amount; one EVALSHA and the bucket's outbox), and giving a use back.

use fred::prelude::{HashesInterface, KeysInterface};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::{Call, idempotency_key, next_page, page_query, read_json};
use crate::http::response::{Response, json_response};
use crate::metrics::Dependency;
use crate::orders::discount::release_discount;
use crate::orders::eligible::eligible_order;
use crate::orders::{DiscountMode, OrderDiscount, Reservation};
use crate::points::actions::{self, Cancel, CancelRequest, Use, UseRequest};
use crate::points::cache::{self, PointsError, UserPoints};
use crate::points::ledger::{self, HistoryEntry};
use crate::scripts;

/// Most points one use may spend.
pub const MAX_USE: u64 = 1_000_000_000_000;

/// Order states points may pay for.
const PAYABLE_ORDERS: [&str; 2] = ["reserved", "confirmed"];

/// How often a use or cancel rebuilds a missing cache before giving up.
const MISS_RETRIES: u32 = 3;

fn overloaded() -> ApiError {
    ApiError::Overloaded {
        retry_after: 2,
        message: "too many point changes waiting to be recorded; retry shortly".into(),
    }
}

fn unavailable(app: &App, err: PointsError) -> ApiError {
    match err {
        PointsError::Redis(err) => app.redis_unavailable("points", &err),
        PointsError::Mysql(err) => app.failed(Dependency::Mysql, err),
    }
}

/// `GET /v1/me/points` → `{balance}`.
pub async fn balance(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        caller: principal, ..
    } = call;
    let user = UserPoints::new(app.prefix(), &principal.user_id);
    let balance = cache::balance(&app.redis, &app.db, &app.scripts.points_fill, &user)
        .await
        .map_err(|err| unavailable(app, err))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "user_id": principal.user_id, "balance": balance.max(0) }),
    ))
}

#[derive(Serialize)]
struct History {
    entries: Vec<HistoryEntry>,
    next_cursor: Option<String>,
}

/// `GET /v1/me/points/history` → the caller's ledger rows, newest first
/// (`?limit=N&cursor=C`).
pub async fn history(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        caller: principal,
        ..
    } = call;
    let (limit, cursor) = page_query(req.uri().query(), 50, 200)?;
    let before = cursor
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::invalid("cursor: not a cursor from this API"))
        })
        .transpose()?;
    let mut entries = ledger::history(&app.db, &principal.user_id, before, limit + 1)
        .await
        .map_err(|e| app.failed(Dependency::Mysql, e))?;
    let next_cursor = next_page(&mut entries, limit, |e| Some(e.entry_id.to_string()));
    Ok(json_response(
        StatusCode::OK,
        &History {
            entries,
            next_cursor,
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UseBody {
    amount: u64,
    order_id: String,
}

/// `POST /v1/me/points/use` `{amount, order_id}` → 201 with the use's txid and the balance.
pub async fn use_points(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        trace_id,
        caller: principal,
        ..
    } = call;
    let idempotency_key = idempotency_key(&req)?;
    let body: UseBody = read_json(req, app.settings.gateway.body_limit_bytes).await?;
    if !(1..=MAX_USE).contains(&body.amount) {
        return Err(ApiError::invalid(format!(
            "amount: must be between 1 and {MAX_USE}"
        )));
    }
    if body.order_id.is_empty() || body.order_id.len() > 40 {
        return Err(ApiError::invalid("order_id: must have 1 to 40 characters"));
    }
    let order = eligible_order(
        app,
        &principal.user_id,
        &body.order_id,
        &PAYABLE_ORDERS,
        "points",
    )
    .await?;

    let amount = order.amount.unwrap_or(0);
    let user = UserPoints::new(app.prefix(), &principal.user_id);
    let txid = format!("use-{}", uuid::Uuid::now_v7().simple());
    let hold = OrderDiscount::points(app.prefix(), &order.order_id, &txid)
        .ok_or_else(|| ApiError::NotFound("no such order".into()))?;
    let request = UseRequest {
        user: &user,
        amount: body.amount,
        order_id: &order.order_id,
        txid: &txid,
        trace_id,
        idempotency_key: idempotency_key.as_deref(),
        outbox_max: app.settings.gateway.outbox_max_len,
        idempotency_ttl_secs: app.settings.gateway.idempotency_ttl_secs,
        record_ttl_secs: app.settings.points.use_record_ttl_secs,
    };

    // The points are reserved on the order first (`lua/order_discount.lua`, on the sale's
    // hash tag), then spent (`lua/points_use.lua`, on the bucket's): no one script may touch
    // both. The use's txid is the reservation's reference and its holder.
    let reserved = hold
        .reserve(
            &app.redis,
            &app.scripts.order_discount,
            &txid,
            body.amount,
            amount,
            DiscountMode::Exact,
        )
        .await
        .map_err(|err| app.redis_unavailable("points use", &err))?;
    let reserved = match reserved {
        Reservation::Reserved { .. } => true,
        // A retry of a use made before (same Idempotency-Key) must still get its first
        // answer, though that use may be what fills the order: the script replays it.
        Reservation::Exceeds { total, .. } => {
            if !has_stored_answer(app, &user, idempotency_key.as_deref()).await? {
                return Err(ApiError::discount_exceeds_amount(amount, total));
            }
            false
        }
    };
    let outcome = match spend(app, &request).await {
        Ok(outcome) => outcome,
        Err(failed) => {
            if reserved && !failed.may_have_run {
                release_discount(app, &hold, Some(&txid)).await;
            }
            return Err(failed.answer);
        }
    };
    match &outcome {
        Use::Used { txid: used, .. } if *used == txid => {
            if !reserved {
                // The stored answer expired between the look and the use, which spent anew
                // on an order without room: give the points back.
                return Err(undo_unreserved_use(app, &user, &txid, trace_id, amount).await);
            }
        }
        // Refused, or the replay of an earlier use (which holds its own reservation).
        _ => {
            if reserved {
                release_discount(app, &hold, Some(&txid)).await;
            }
        }
    }
    match outcome {
        Use::Used { txid, balance } => Ok(json_response(
            StatusCode::CREATED,
            &json!({
                "txid": txid,
                "amount": body.amount,
                "order_id": order.order_id,
                "balance": balance.max(0),
            }),
        )),
        Use::Insufficient { balance } => Err(ApiError::conflict(
            "insufficient_points",
            format!(
                "{} points asked for, {} available",
                body.amount,
                balance.max(0)
            ),
        )),
        Use::Overloaded => Err(overloaded()),
        Use::KeyReused => Err(ApiError::IdempotencyKeyReused),
        Use::Miss => Err(unavailable(
            app,
            PointsError::Mysql(anyhow::anyhow!("the point cache kept disappearing")),
        )),
    }
}

/// A use that did not answer: what the client is told, and whether the script may have run.
struct SpendFailed {
    answer: ApiError,
    may_have_run: bool,
}

/// Runs the use script, rebuilding a missing cache up to [`MISS_RETRIES`] times.
async fn spend(app: &App, request: &UseRequest<'_>) -> Result<Use, SpendFailed> {
    let mut outcome = Use::Miss;
    for _ in 0..MISS_RETRIES {
        outcome = actions::spend(&app.redis, &app.scripts.points_use, request)
            .await
            .map_err(|err| SpendFailed {
                answer: app.redis_unavailable("points use", &err),
                may_have_run: scripts::may_have_run(&err),
            })?;
        if outcome != Use::Miss {
            break;
        }
        cache::rebuild(&app.redis, &app.db, &app.scripts.points_fill, request.user)
            .await
            .map_err(|err| SpendFailed {
                // The use script answered `miss` and did not run again.
                answer: unavailable(app, err),
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
) -> Result<bool, ApiError> {
    let Some(key) = key else {
        return Ok(false);
    };
    app.redis
        .exists(user.keys.idempotency(user.user_id, key))
        .await
        .map(|n: u32| n > 0)
        .map_err(|err| app.redis_unavailable("points use", &err))
}

/// Gives back a use that was spent without room on its order; the shopper is told 409.
async fn undo_unreserved_use(
    app: &App,
    user: &UserPoints<'_>,
    use_txid: &str,
    trace_id: &str,
    amount: u64,
) -> ApiError {
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
            ApiError::discount_exceeds_amount(amount, amount)
        }
        Ok(other) => ApiError::Internal(anyhow::anyhow!(
            "giving back {use_txid}, spent past its order's amount: {other:?}"
        )),
        Err(err) => app.failed(
            Dependency::Redis,
            anyhow::Error::new(err).context(format!(
                "giving back {use_txid}, spent past its order's amount"
            )),
        ),
    }
}

/// `POST /v1/me/points/use/{txid}/cancel` → 200; the use's points come back, once.
pub async fn cancel_use(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        param: use_txid,
        trace_id,
        caller: principal,
        ..
    } = call;
    let no_use = || ApiError::NotFound("no such use of points".into());
    let refund_txid = valid_use_txid(use_txid)
        .then(|| flashgate_events::refund_txid(use_txid))
        .flatten()
        .ok_or_else(no_use)?;
    let user = UserPoints::new(app.prefix(), &principal.user_id);
    let mut request = CancelRequest {
        user: &user,
        use_txid,
        refund_txid: &refund_txid,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
        record_ttl_secs: app.settings.points.use_record_ttl_secs,
        from_mysql: None,
    };
    // The use's order, from the ledger when Redis no longer has the use.
    let mut stored_order: Option<String> = None;
    let mut outcome = Cancel::Miss;
    for _ in 0..MISS_RETRIES {
        outcome = actions::cancel(&app.redis, &app.scripts.points_cancel, &request)
            .await
            .map_err(|err| app.redis_unavailable("points cancel", &err))?;
        match outcome {
            Cancel::Miss => {
                cache::rebuild(&app.redis, &app.db, &app.scripts.points_fill, &user)
                    .await
                    .map_err(|err| unavailable(app, err))?;
            }
            // Redis no longer has the use (expired record, lost data): MySQL may.
            Cancel::NotFound if request.from_mysql.is_none() => {
                let stored = ledger::stored_use(&app.db, user.user_id, use_txid, &refund_txid)
                    .await
                    .map_err(|e| app.failed(Dependency::Mysql, e))?
                    .ok_or_else(no_use)?;
                stored_order = Some(stored.order_id.clone());
                if stored.amount == 0 {
                    return Err(ApiError::conflict(
                        "use_rejected",
                        "the system of record refused this use; there is nothing to give back",
                    ));
                }
                if stored.refunded {
                    outcome = Cancel::AlreadyCancelled {
                        amount: i64::try_from(stored.amount).unwrap_or(i64::MAX),
                    };
                    break;
                }
                request.from_mysql = Some((stored.amount, stored.order_id));
            }
            _ => break,
        }
    }
    let refunded = match outcome {
        Cancel::Cancelled { amount, .. } | Cancel::AlreadyCancelled { amount } => amount,
        Cancel::NotFound => return Err(no_use()),
        Cancel::Overloaded => return Err(overloaded()),
        Cancel::Miss => {
            return Err(unavailable(
                app,
                PointsError::Mysql(anyhow::anyhow!("the point cache kept disappearing")),
            ));
        }
    };
    // The use's room on its order is free again. Released once whatever the retries; a
    // failure answers 503, and the retried cancel (`already cancelled`) releases it.
    let order_id = match stored_order {
        Some(order_id) => Some(order_id),
        None => app
            .redis
            .hget(user.keys.use_record(use_txid), "order_id")
            .await
            .map_err(|err| app.redis_unavailable("points cancel", &err))?,
    };
    if let Some(hold) = order_id.and_then(|o| OrderDiscount::points(app.prefix(), &o, use_txid)) {
        hold.release(&app.redis, &app.scripts.order_discount, None)
            .await
            .map_err(|err| app.redis_unavailable("points cancel", &err))?;
    }
    let balance = match outcome {
        Cancel::Cancelled { balance, .. } => balance,
        _ => cache::balance(&app.redis, &app.db, &app.scripts.points_fill, &user)
            .await
            .map_err(|err| unavailable(app, err))?,
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "txid": use_txid,
            "refund_txid": refund_txid,
            "status": "cancelled",
            "refunded": refunded,
            "balance": balance.max(0),
        }),
    ))
}

/// `use-` and 32 lowercase hex digits: the txids this gateway gives out.
fn valid_use_txid(txid: &str) -> bool {
    txid.strip_prefix("use-").is_some_and(|id| {
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_use_txids_of_this_gateway_are_accepted() {
        let txid = format!("use-{}", uuid::Uuid::now_v7().simple());
        assert!(valid_use_txid(&txid));
        assert!(!valid_use_txid("use-"));
        assert!(!valid_use_txid(&txid.to_uppercase()));
        assert!(!valid_use_txid(&txid.replace("use-", "refund-")));
        assert!(!valid_use_txid(&format!("{txid}0")));
    }
}
