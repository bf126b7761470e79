//! Shoppers' points: the balance, the ledger's history, spending on an order (within what is
//! left of its amount; one EVALSHA and the bucket's outbox), and giving a use back.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::http::error::{ApiError, Overload};
use crate::http::request::{Call, id_cursor, idempotency_key, page_query, read_json};
use crate::http::response::{Response, json_response, list_page};
use crate::points::cache::balance_of;
use crate::points::ledger::history_of;
use crate::points::refund::{Refund, cancel_use as give_back};
use crate::points::spend::{PointsUse, Spend, spend};
use crate::routes::orders::refused;

fn overloaded() -> ApiError {
    ApiError::overloaded(Overload::Backlog("point changes"))
}

/// `GET /v1/me/points` → `{balance}`.
pub async fn balance(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let user_id = &call.caller.user_id;
    let balance = balance_of(app, user_id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "user_id": user_id, "balance": balance.max(0) }),
    ))
}

/// `GET /v1/me/points/history` → the caller's ledger rows, newest first
/// (`?limit=N&cursor=C`).
pub async fn history(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let (limit, cursor) = page_query(call.req.uri().query())?;
    let before = cursor.map(id_cursor).transpose()?;
    let entries = history_of(app, &call.caller.user_id, before, limit + 1).await?;
    Ok(list_page("entries", entries, limit, |e| {
        Some(e.entry_id.to_string())
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UseBody {
    amount: u64,
    order_id: String,
}

/// `POST /v1/me/points/use` `{amount, order_id}` → 201 with the use's txid and the balance.
pub async fn use_points(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&call.req)?;
    let body: UseBody = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    let asked = PointsUse {
        user_id: &call.caller.user_id,
        amount: body.amount,
        order_id: &body.order_id,
        idempotency_key: idempotency_key.as_deref(),
        trace_id: call.trace_id,
    };
    match spend(app, &asked).await? {
        Spend::Used {
            txid,
            order_id,
            balance,
        } => Ok(json_response(
            StatusCode::CREATED,
            &json!({
                "txid": txid,
                "amount": body.amount,
                "order_id": order_id,
                "balance": balance.max(0),
            }),
        )),
        Spend::Order(refusal) => Err(refused("points", refusal)),
        Spend::Insufficient { balance } => Err(ApiError::conflict(
            "insufficient_points",
            format!(
                "{} points asked for, {} available",
                body.amount,
                balance.max(0)
            ),
        )),
        Spend::Overloaded => Err(overloaded()),
        Spend::KeyReused => Err(ApiError::IdempotencyKeyReused),
    }
}

/// `POST /v1/me/points/use/{txid}/cancel` → 200; the use's points come back, once.
pub async fn cancel_use(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let use_txid = call.param;
    match give_back(app, &call.caller.user_id, use_txid, call.trace_id).await? {
        Refund::Cancelled {
            refund_txid,
            refunded,
            balance,
        } => Ok(json_response(
            StatusCode::OK,
            &json!({
                "txid": use_txid,
                "refund_txid": refund_txid,
                "status": "cancelled",
                "refunded": refunded,
                "balance": balance.max(0),
            }),
        )),
        Refund::NotFound => Err(ApiError::NotFound("no such use of points".into())),
        Refund::Rejected => Err(ApiError::conflict(
            "use_rejected",
            "the system of record refused this use; there is nothing to give back",
        )),
        Refund::Overloaded => Err(overloaded()),
    }
}
