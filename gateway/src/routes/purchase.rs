//! `POST /v1/sales/{sale_id}/purchases`: one EVALSHA decides; the answer does not wait for Kafka.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::{Call, idempotency_key, read_json};
use crate::http::response::{Response, json_response};
use crate::keys::SaleKeys;
use crate::metrics::Dependency;
use crate::sales::admission::{Admission, PurchaseRequest, admit};
use crate::scripts::may_have_run;

/// Most units one request may ask for.
pub const MAX_QUANTITY: u32 = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    quantity: u32,
}

#[derive(Serialize)]
struct Reserved<'a> {
    order_id: &'a str,
    sale_id: u64,
    quantity: u32,
    status: &'static str,
    status_url: String,
}

/// Handles one purchase.
pub async fn purchase(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        param: sale_id,
        trace_id,
        caller: principal,
        ..
    } = call;
    let sale_id: u64 = sale_id
        .parse()
        .map_err(|_| ApiError::NotFound("no such sale".into()))?;
    let idempotency_key = idempotency_key(&req)?;
    let body: PurchaseBody = read_json(req, app.settings.gateway.body_limit_bytes).await?;
    if !(1..=MAX_QUANTITY).contains(&body.quantity) {
        return Err(ApiError::invalid(format!(
            "quantity: must be between 1 and {MAX_QUANTITY}"
        )));
    }

    // A replay must reach the stored answer, so only key-less requests use the memory.
    if idempotency_key.is_none() && app.sold_out.is_sold_out(sale_id) {
        app.metrics.observe_sold_out_from_memory();
        return Err(ApiError::conflict("sold_out", "the sale is sold out"));
    }

    let keys = SaleKeys::new(app.prefix(), sale_id);
    let order_id = format!("{sale_id}-{}", uuid::Uuid::now_v7().simple());
    let request = PurchaseRequest {
        keys: &keys,
        user_id: &principal.user_id,
        quantity: body.quantity,
        order_id: &order_id,
        trace_id,
        idempotency_key: idempotency_key.as_deref(),
        outbox_max: app.settings.gateway.outbox_max_len,
        idempotency_ttl_secs: app.settings.gateway.idempotency_ttl_secs,
    };
    let admission = admit(&app.redis, &app.scripts.purchase, &request)
        .await
        .map_err(|err| {
            app.metrics.dependency_error(Dependency::Redis);
            tracing::warn!(sale_id, error = %err, "purchase script failed");
            if may_have_run(&err) {
                // The order may be admitted: a plain "retry" could buy twice without a key.
                ApiError::OutcomeUnknown
            } else {
                ApiError::Overloaded {
                    retry_after: 1,
                    message: "the sale cannot be reached right now; retry shortly".into(),
                }
            }
        })?;
    app.metrics.observe_admission(&admission);
    match admission {
        Admission::Admitted {
            order_id,
            quantity,
            remaining,
        } => {
            if remaining == 0 {
                app.sold_out.mark(sale_id);
            }
            Ok(json_response(
                StatusCode::ACCEPTED,
                &Reserved {
                    order_id: &order_id,
                    sale_id,
                    quantity,
                    status: "reserved",
                    status_url: format!("/v1/orders/{order_id}"),
                },
            ))
        }
        Admission::SoldOut {
            remaining,
            replayed,
        } => {
            if remaining <= 0 {
                // Only a fresh answer says how the sale stands now; a replayed one tells how
                // it stood when the key was first used (stock may have come back since, or
                // a smaller quantity may fit).
                if !replayed {
                    app.sold_out.mark(sale_id);
                }
                Err(ApiError::conflict("sold_out", "the sale is sold out"))
            } else {
                Err(ApiError::conflict(
                    "sold_out",
                    format!("only {remaining} left; ask for fewer"),
                ))
            }
        }
        Admission::LimitExceeded => Err(ApiError::conflict(
            "limit_exceeded",
            "this purchase would exceed the per-user limit of the sale",
        )),
        Admission::NotActive => Err(ApiError::conflict(
            "sale_not_active",
            "the sale is not open (not started, ended, or paused)",
        )),
        Admission::NotFound => Err(ApiError::NotFound("no such sale".into())),
        Admission::Overloaded => Err(ApiError::Overloaded {
            retry_after: 2,
            message: "too many orders waiting to be recorded; retry shortly".into(),
        }),
        Admission::KeyReused => Err(ApiError::IdempotencyKeyReused),
    }
}
