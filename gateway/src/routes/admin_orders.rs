//! The back office's actions on any order: `POST /v1/admin/orders/{order_id}/cancel` (with a
//! reason) and `POST /v1/admin/orders/{order_id}/mark-paid` (a payment taken outside
//! flashgate), for managers and operators.

use flashgate_events::OrderEnd;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::{Call, read_json};
use crate::http::response::Response;
use crate::orders::status::{OrderView, find};
use crate::routes::orders::{EndAsked, end_and_answer};

/// Reason recorded on an order paid through the back office.
pub const PAID_OUTSIDE_FLASHGATE: &str = "paid_outside_flashgate";

/// Longest reason a manager may give, in characters (the column's width).
const REASON_MAX_CHARS: usize = 200;

/// `POST /v1/admin/orders/{order_id}/cancel` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Why, 1 to 200 characters, one line.
    reason: String,
}

async fn any_order(app: &App, order_id: &str) -> Result<OrderView, ApiError> {
    if !flashgate_events::ids::fits(order_id, flashgate_events::ids::ORDER_ID_MAX_LEN) {
        return Err(no_order());
    }
    find(&app.db, &app.redis, app.prefix(), order_id)
        .await?
        .map(|(_, order)| order)
        .ok_or_else(no_order)
}

fn no_order() -> ApiError {
    ApiError::NotFound("no such order".into())
}

/// Cancels any open order, recording the manager's reason.
pub async fn cancel(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let order_id = call.param;
    let body: CancelBody = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    let reason = body.reason.trim();
    if reason.is_empty()
        || reason.chars().count() > REASON_MAX_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(format!(
            "reason: must have 1 to {REASON_MAX_CHARS} characters on one line"
        )));
    }
    let order = any_order(app, order_id).await?;
    let asked = EndAsked {
        end: OrderEnd::Cancelled,
        caller: None,
        reason,
        idempotency_key: None,
    };
    end_and_answer(app, order, &asked, call.trace_id).await
}

/// Records that an open order was paid outside flashgate: its units stay sold and it earns
/// points.
pub async fn mark_paid(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let order = any_order(app, call.param).await?;
    let asked = EndAsked {
        end: OrderEnd::Paid,
        caller: None,
        reason: PAID_OUTSIDE_FLASHGATE,
        idempotency_key: None,
    };
    end_and_answer(app, order, &asked, call.trace_id).await
}
