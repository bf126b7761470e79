//! `POST /charges`, `GET /charges/{id}` and `GET /charges` (by idempotency key, by reference,
//! or all): a route only parses, asks the book and maps the outcome.

use std::time::Instant;

use http::StatusCode;
use serde::Serialize;

use crate::app::App;
use crate::book::{Charged, Unavailable};
use crate::charge::{Charge, ChargeBody, ChargeRequest};
use crate::http::error::{ApiError, ErrorDetail};
use crate::http::request::{Request, idempotency_key, query_params, read_json};
use crate::http::response::{Response, json_response, replayed};

/// Charges listed per page when the client does not say.
const DEFAULT_PAGE: usize = 100;

/// Most charges one page lists.
const MAX_PAGE: usize = 10_000;

/// `POST /charges`: decides and records the charge (or replays the one its key made), then
/// answers when it is due: 201 succeeded, 402 declined.
pub async fn create(app: &App, req: Request, _: &str) -> Result<Response, ApiError> {
    let key = idempotency_key(req.headers())?
        .ok_or_else(|| ApiError::invalid("the Idempotency-Key header is required"))?;
    let body: ChargeBody = read_json(req, None).await?;
    let request = ChargeRequest::try_from(body)?;
    let unlucky = app.unlucky();
    let charged = app
        .provider
        .book()
        .charge(&key, &request, unlucky, app.slow(), Instant::now());
    let (charge, answer_at, again) = match charged {
        Charged::Recorded { charge, answer_at } => (charge, answer_at, false),
        Charged::Replayed { charge, answer_at } => (charge, answer_at, true),
        Charged::KeyReused => {
            app.metrics.observe_charge("key_reused");
            return Err(ApiError::IdempotencyKeyReused);
        }
        Charged::Unavailable(why) => {
            app.metrics.observe_charge(match why {
                Unavailable::Random => "failed_random",
                Unavailable::Flaky => "failed_flaky",
            });
            return Err(ApiError::Unavailable(why));
        }
        Charged::Full => {
            app.metrics.observe_charge("provider_full");
            return Err(ApiError::Full(app.provider.counts().charges));
        }
    };
    app.metrics
        .observe_charge(match (again, charge.failure_code) {
            (true, _) => "replayed",
            (false, None) => "succeeded",
            (false, Some(code)) => code.as_str(),
        });
    // A `tok_slow` charge (and a replay of it) is answered when it is due, not before.
    tokio::time::sleep_until(answer_at.into()).await;
    let response = charge_answer(&charge);
    Ok(if again { replayed(response) } else { response })
}

/// A declined charge's 402: the charge, and the error of the contract naming its reason.
#[derive(Serialize)]
struct Declined<'a> {
    #[serde(flatten)]
    charge: &'a Charge,
    error: ErrorDetail<'a>,
}

/// The answer of a charge request: 201 with the charge when it succeeded, else 402 with the
/// charge and `error.code` = its `failure_code`.
fn charge_answer(charge: &Charge) -> Response {
    match charge.failure_code {
        None => json_response(StatusCode::CREATED, charge),
        Some(code) => json_response(
            StatusCode::PAYMENT_REQUIRED,
            &Declined {
                charge,
                error: ErrorDetail {
                    code: code.as_str(),
                    message: code.message().to_owned(),
                },
            },
        ),
    }
}

/// `GET /charges/{id}`: the charge as it is now.
pub async fn get(app: &App, _: Request, id: &str) -> Result<Response, ApiError> {
    let charge = app.provider.book().get(id).cloned();
    charge
        .map(|charge| json_response(StatusCode::OK, &charge))
        .ok_or_else(|| ApiError::NoSuchCharge(id.to_owned()))
}

/// `GET /charges?idempotency_key=K`: the charge that key made (404 `no_such_charge` when it
/// made none: nothing was charged under it). `GET /charges[?reference=R][&limit=N]
/// [&starting_after=ID]`: a page of charges, oldest first, `{"charges": [...], "has_more"}`.
pub async fn list(app: &App, req: Request, _: &str) -> Result<Response, ApiError> {
    let params = query_params(
        req.uri().query(),
        &["idempotency_key", "reference", "limit", "starting_after"],
    )?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(key) = param("idempotency_key") {
        if params.len() > 1 {
            return Err(ApiError::invalid(
                "idempotency_key: finds one charge and takes no other parameter",
            ));
        }
        let charge = app.provider.book().by_key(key).cloned();
        return charge
            .map(|charge| json_response(StatusCode::OK, &charge))
            .ok_or_else(|| ApiError::NoSuchCharge(format!("made under the key {key:?}")));
    }
    let limit = match param("limit") {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit: must be 1 to {MAX_PAGE}")))?,
    };
    let page = app
        .provider
        .book()
        .list(param("reference"), param("starting_after"), limit)?;
    Ok(json_response(StatusCode::OK, &page))
}
