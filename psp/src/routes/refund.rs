//! `POST /charges/{id}/refund`: a succeeded charge given back in full, at most once.

use http::StatusCode;

use crate::app::App;
use crate::charge::RefundBody;
use crate::http::error::ApiError;
use crate::http::request::{Request, idempotency_key, read_json};
use crate::http::response::{Response, json_response, replayed};
use crate::refunds::Refunded;

/// Refunds the charge (`Idempotency-Key` optional; the body `{amount?, reason?}` optional):
/// 200 with the refund, the same refund when it was made before.
pub async fn refund(app: &App, req: Request, id: &str) -> Result<Response, ApiError> {
    let key = idempotency_key(req.headers())?;
    let body: RefundBody = read_json(req, Some(RefundBody::default())).await?;
    body.check()?;
    let refunded = app.provider.book().refund(id, key.as_deref(), &body);
    let (outcome, answer) = match refunded {
        Refunded::Made(refund) => ("refunded", Ok(json_response(StatusCode::OK, &refund))),
        Refunded::Again(refund) => (
            "replayed",
            Ok(replayed(json_response(StatusCode::OK, &refund))),
        ),
        Refunded::NoSuchCharge => ("no_such_charge", Err(ApiError::NoSuchCharge(id.to_owned()))),
        Refunded::NotRefundable => (
            "not_refundable",
            Err(ApiError::NotRefundable(id.to_owned())),
        ),
        Refunded::KeyReused => ("key_reused", Err(ApiError::IdempotencyKeyReused)),
        Refunded::PartialAmount { charge_amount } => (
            "partial_amount",
            Err(ApiError::invalid(format!(
                "amount: refunds are whole; this charge's amount is {charge_amount}"
            ))),
        ),
    };
    app.metrics.observe_refund(outcome);
    answer
}
