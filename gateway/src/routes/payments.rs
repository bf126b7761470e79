//! `POST /v1/orders/{order_id}/payment`: the shopper pays their open order with a payment
//! token. The request only moves the order to `payment_pending` in Redis and hands the payment
//! to the saga through the sale's outbox; no provider is called while the shopper waits.

use http::StatusCode;
use serde::Deserialize;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::{Call, idempotency_key, read_json};
use crate::http::response::{Response, json_response};
use crate::lifecycle::close::{self, CloseRequest, Closing};
use crate::orders::status::order_of;
use crate::routes::orders::{lost_hold, no_order, now, window_closed};

/// Longest payment token taken, in characters.
const TOKEN_MAX_LEN: usize = 128;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayBody {
    /// The provider's token for the shopper's means of payment (`tok_ok`, ...).
    payment_token: String,
}

/// Whether `token` has the shape of a payment token: 1 to 128 letters, digits, `_` or `-`.
/// Its meaning is the provider's to judge.
fn well_formed(token: &str) -> bool {
    (1..=TOKEN_MAX_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn not_payable(status: &str) -> ApiError {
    ApiError::conflict(
        "order_not_payable",
        format!("the order is {status}; it cannot be paid now"),
    )
}

/// 202 with the order `payment_pending` (200 `paid` when nothing is left to charge); the same
/// `Idempotency-Key` again → the same 202 with the order as it is now; 409
/// `order_not_payable` (final, paid, or a payment already pending), 409
/// `payment_window_closed` (past `pay_by`), 400 for a malformed token, 404 for anyone else's.
pub async fn pay(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let key = idempotency_key(&call.req)?;
    let user = call.caller.user_id.as_str();
    let body: PayBody = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    if !well_formed(&body.payment_token) {
        return Err(ApiError::invalid(format!(
            "payment_token: 1 to {TOKEN_MAX_LEN} letters, digits, '_' or '-'"
        )));
    }
    let order = order_of(app, user, call.param)
        .await?
        .ok_or_else(no_order)?;
    let open = matches!(
        order.status.as_str(),
        "reserved" | "confirmed" | "payment_pending"
    );
    if !open && key.is_none() {
        return Err(not_payable(&order.status));
    }
    let request = CloseRequest {
        order_id: &order.order_id,
        end: flashgate_events::OrderEnd::Paid,
        caller: Some(user),
        reason: "",
        trace_id: call.trace_id,
        idempotency: key
            .as_deref()
            .map(|key| (key, app.settings.gateway.idempotency_ttl_secs)),
        settle_ms: close::settle_ms(app),
    };
    let grace_ms = app.settings.payments.grace_seconds.saturating_mul(1_000);
    let closing = close::start_payment(
        &app.redis,
        &app.scripts.order_close,
        app.prefix(),
        &request,
        &body.payment_token,
        grace_ms,
    )
    .await
    .map_err(crate::failure::Failure::unreachable("payment"))?;
    match closing {
        Closing::Closed(record) => {
            let paid_at_once = record.state == "paid";
            app.metrics.observe_lifecycle(if paid_at_once {
                "paid"
            } else {
                "payment_requested"
            });
            tracing::info!(
                order_id = order.order_id,
                state = record.state,
                "payment asked"
            );
            let status = if paid_at_once {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(json_response(status, &now(app, &order.order_id).await?))
        }
        Closing::Replayed(_) => Ok(json_response(
            StatusCode::ACCEPTED,
            &now(app, &order.order_id).await?,
        )),
        Closing::Already(record) | Closing::Final(record) | Closing::Refunding(record) => {
            Err(not_payable(shown(&record.state)))
        }
        Closing::NotDue(record) => Err(not_payable(shown(&record.state))),
        Closing::WindowClosed(record) => Err(window_closed(&record)),
        Closing::KeyReused => Err(ApiError::IdempotencyKeyReused),
        Closing::NotFound if open => Err(lost_hold(&order)),
        Closing::NotFound => Err(not_payable(&order.status)),
    }
}

/// A record's state as shoppers read it.
fn shown(state: &str) -> &str {
    match state {
        "paying" => "payment_pending",
        "refunding" => "refund_pending",
        "held" => "reserved",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_letters_digits_underscores_and_dashes_up_to_128() {
        assert!(well_formed("tok_ok"));
        assert!(well_formed(&"a".repeat(128)));
        assert!(!well_formed(""));
        assert!(!well_formed(&"a".repeat(129)));
        assert!(!well_formed("tok ok"));
        assert!(!well_formed("tok\nok"));
        assert!(!well_formed("tök"));
    }
}
