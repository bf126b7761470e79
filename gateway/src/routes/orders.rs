//! `GET /v1/orders/{order_id}`, `GET /v1/me/orders` and `POST /v1/orders/{order_id}/cancel`
//! for shoppers (a paid order's cancel asks for its refund); how an end asked of an order is answered (the manager's cancel and mark-paid
//! share it); how a refusal to put a discount on an order is answered (the coupon and points
//! routes share it).

use flashgate_events::OrderEnd;
use http::StatusCode;

use crate::app::App;
use crate::http::error::{ApiError, Overload};
use crate::http::request::{Call, idempotency_key, page_query, time_id_cursor};
use crate::http::response::{Response, json_response, list_page};
use crate::lifecycle::close::Closing;
use crate::lifecycle::end_order;
use crate::orders::eligible::OrderRefusal;
use crate::orders::status::{OrderView, find, order_of, orders_of};

/// Reason recorded when a shopper cancels their own order.
pub const CANCELLED_BY_SHOPPER: &str = "cancelled_by_shopper";

/// The answer for an order the caller cannot see.
pub fn no_order() -> ApiError {
    ApiError::NotFound("no such order".into())
}

/// The answer to a discount (`what`: "a coupon", "points") the order cannot take.
pub fn refused(what: &str, refusal: OrderRefusal) -> ApiError {
    match refusal {
        OrderRefusal::NotFound => no_order(),
        OrderRefusal::NotEligible { status } => ApiError::conflict(
            "order_not_eligible",
            format!("{what} cannot be applied to a {status} order"),
        ),
        OrderRefusal::ExceedsAmount { amount, applied } => {
            ApiError::discount_exceeds_amount(amount, applied)
        }
    }
}

/// The caller's order; anyone else's, and unknown ids, are 404.
pub async fn get(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let order = order_of(app, &call.caller.user_id, call.param)
        .await?
        .ok_or_else(no_order)?;
    Ok(json_response(StatusCode::OK, &order))
}

/// The caller's persisted orders, newest first (`?limit=N&cursor=C`).
pub async fn list_mine(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let (limit, cursor) = page_query(call.req.uri().query())?;
    let cursor = cursor.map(time_id_cursor).transpose()?;
    let orders = orders_of(app, &call.caller.user_id, cursor, limit + 1).await?;
    Ok(list_page("orders", orders, limit, |o| {
        Some(format!(
            "{}:{}",
            o.admitted_at?.timestamp_millis(),
            o.order_id
        ))
    }))
}

/// `POST /v1/orders/{order_id}/cancel`: the caller cancels their own open order → 200 with the
/// order `cancelled`; the same again for a second cancel; a paid one while its sale runs → 202
/// `refund_pending` (refunded, then cancelled); 409 `order_not_cancellable` once it is expired
/// or rejected, or paid and its sale over; 404 for anyone else's.
pub async fn cancel(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let key = idempotency_key(&call.req)?;
    let user = call.caller.user_id.as_str();
    let order = order_of(app, user, call.param)
        .await?
        .ok_or_else(no_order)?;
    let asked = EndAsked {
        end: OrderEnd::Cancelled,
        caller: Some(user),
        reason: CANCELLED_BY_SHOPPER,
        idempotency_key: key.as_deref(),
    };
    end_and_answer(app, order, &asked, call.trace_id).await
}

/// An end asked of an order by a route.
pub struct EndAsked<'a> {
    /// How it is to end: `Cancelled` or `Paid`.
    pub end: OrderEnd,
    /// The shopper asking for their own order, or `None` (a manager, the back office).
    pub caller: Option<&'a str>,
    /// Why.
    pub reason: &'a str,
    /// The caller's `Idempotency-Key`, if any.
    pub idempotency_key: Option<&'a str>,
}

fn end_refused(end: OrderEnd, status: &str) -> ApiError {
    match end {
        OrderEnd::Paid => ApiError::conflict(
            "order_not_payable",
            format!("the order is {status}; it can no longer be paid"),
        ),
        _ => ApiError::conflict(
            "order_not_cancellable",
            format!("the order is {status}; it can no longer be cancelled"),
        ),
    }
}

/// Ends `order` as `asked` and answers with the order as it is now: 200 when it ended so (now
/// or before), 409 when it is final another way (or, for a payment, past its `pay_by`). A
/// cancel of a paid order asks for its refund: 202 with the order `refund_pending` (the saga
/// refunds it, then it ends `cancelled`).
pub async fn end_and_answer(
    app: &App,
    order: OrderView,
    asked: &EndAsked<'_>,
    trace_id: &str,
) -> Result<Response, ApiError> {
    let refund = asked.end == OrderEnd::Cancelled && order.status == "paid";
    if order.is_final() && !refund {
        return if order.status == asked.end.status() {
            Ok(json_response(StatusCode::OK, &order))
        } else {
            Err(end_refused(asked.end, &order.status))
        };
    }
    let closing = end_order(
        app,
        &order.order_id,
        asked.end,
        asked.caller,
        asked.reason,
        trace_id,
        asked.idempotency_key,
    )
    .await?;
    match closing {
        Closing::Closed(_) | Closing::Already(_) => Ok(json_response(
            StatusCode::OK,
            &now(app, &order.order_id).await?,
        )),
        Closing::Refunding(_) | Closing::Replayed(_) => Ok(json_response(
            StatusCode::ACCEPTED,
            &now(app, &order.order_id).await?,
        )),
        Closing::Final(record) | Closing::NotDue(record) => {
            Err(end_refused(asked.end, &record.state))
        }
        Closing::WindowClosed(record) => Err(window_closed(&record)),
        Closing::KeyReused => Err(ApiError::IdempotencyKeyReused),
        // MySQL holds it open but Redis has no record of it: Redis lost it, and the sale's
        // restore (`POST /v1/admin/sales/restore`) brings the hold back.
        Closing::NotFound => Err(lost_hold(&order)),
    }
}

/// 409 `payment_window_closed`: the order's `pay_by` (of `record`) has passed.
pub fn window_closed(record: &crate::lifecycle::close::Record) -> ApiError {
    ApiError::conflict(
        "payment_window_closed",
        format!(
            "the order had to be paid by {}",
            record
                .pay_by
                .map_or_else(|| "its pay_by".to_owned(), |t| t.to_rfc3339())
        ),
    )
}

/// The order as it is now, after a step changed it.
pub async fn now(app: &App, order_id: &str) -> Result<OrderView, ApiError> {
    Ok(find(&app.db, &app.redis, app.prefix(), order_id)
        .await?
        .ok_or_else(no_order)?
        .1)
}

/// The answer when MySQL holds an order that Redis has no record of: for an open one, Redis
/// lost it, and the sale's restore (`POST /v1/admin/sales/restore`) brings the hold back; a
/// paid one's record went with its sale's cleanup.
pub fn lost_hold(order: &OrderView) -> ApiError {
    if order.status == "paid" {
        return ApiError::conflict(
            "order_not_cancellable",
            "the order's sale is over and cleaned up; a refund now is the back office's",
        );
    }
    tracing::warn!(
        order_id = order.order_id,
        "an open order has no record in Redis; restore its sale"
    );
    ApiError::overloaded(Overload::Unreachable("the order's hold"))
}
