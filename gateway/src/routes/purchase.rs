//! `POST /v1/sales/{sale_id}/purchases`: one EVALSHA decides; the answer does not wait for Kafka.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::http::error::{ApiError, Overload};
use crate::http::request::{Call, idempotency_key, read_json};
use crate::http::response::{Response, json_response};
use crate::limits::Client;
use crate::sales::admission::Admission;
use crate::sales::purchase::{Purchase, buy};
use flashgate_config::RateClass;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    quantity: u32,
}

/// The 202 answer: the order is reserved; its status URL tells when it is persisted.
#[derive(Serialize)]
struct ReservedOrder<'a> {
    order_id: &'a str,
    sale_id: u64,
    quantity: u32,
    status: &'static str,
    status_url: String,
}

fn no_sale() -> ApiError {
    ApiError::NotFound("no such sale".into())
}

/// Handles one purchase.
pub async fn purchase(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let sale_id: u64 = call.param.parse().map_err(|_| no_sale())?;
    let idempotency_key = idempotency_key(&call.req)?;
    let client = call.req.extensions().get::<Client>().copied();
    let pass_ok = crate::routes::queue::pass_ok(app, &call, sale_id);
    let body: PurchaseBody = read_json(call.req, app.settings.gateway.body_limit_bytes).await?;
    let admission = buy(
        app,
        &Purchase {
            sale_id,
            user_id: &call.caller.user_id,
            quantity: body.quantity,
            idempotency_key: idempotency_key.as_deref(),
            trace_id: call.trace_id,
            pass_ok,
            client,
        },
    )
    .await?;
    match admission {
        Admission::Admitted {
            order_id, quantity, ..
        } => {
            // The purchase's lines carry its trace id, the order's (`orders.trace_id`): its
            // order id is not recorded into the request span on this hot path (a re-encoding
            // of the span's fields by the JSON log layer for every admission).
            Ok(json_response(
                StatusCode::ACCEPTED,
                &ReservedOrder {
                    order_id: &order_id,
                    sale_id,
                    quantity,
                    status: "reserved",
                    status_url: format!("/v1/orders/{order_id}"),
                },
            ))
        }
        Admission::SoldOut { remaining, .. } if remaining <= 0 => {
            Err(ApiError::conflict("sold_out", "the sale is sold out"))
        }
        Admission::SoldOut { remaining, .. } => Err(ApiError::conflict(
            "sold_out",
            format!("only {remaining} left; ask for fewer"),
        )),
        Admission::LimitExceeded => Err(ApiError::conflict(
            "limit_exceeded",
            "this purchase would exceed the per-user limit of the sale",
        )),
        Admission::NotActive => Err(ApiError::conflict(
            "sale_not_active",
            "the sale is not open (not started, ended, or paused)",
        )),
        Admission::NotFound => Err(no_sale()),
        Admission::Overloaded => Err(ApiError::overloaded(Overload::Backlog("orders"))),
        Admission::KeyReused => Err(ApiError::IdempotencyKeyReused),
        Admission::RateLimited { key, retry_us } => Err(ApiError::RateLimited(
            app.limiter.refusal(RateClass::Purchase, key, retry_us),
        )),
        Admission::QueuePassRequired => Err(ApiError::QueuePassRequired),
    }
}
