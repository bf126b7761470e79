//! The one API error type, mapped to the error contract (`{"error": {"code", "message"}}`)
//! in one place.

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::book::Unavailable;
use crate::charge::Invalid;
use crate::http::response::{Response, json_response};

/// Everything a request can end with other than its answer (a declined charge's 402 is an
/// answer: the charge, recorded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`: a missing or bad header, body or query parameter.
    #[error("{0}")]
    InvalidRequest(String),
    /// 404 `no_such_charge`.
    #[error("no charge {0}")]
    NoSuchCharge(String),
    /// 404 `not_found`: no such route.
    #[error("no such route")]
    NotFound,
    /// 405 `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `charge_not_refundable`: a declined charge took no money.
    #[error("charge {0} was declined: there is nothing to refund")]
    NotRefundable(String),
    /// 413 `payload_too_large`.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 422 `idempotency_key_reused`.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// 503 `provider_unavailable`: nothing was charged; retry (the same key is free).
    #[error("{}", match .0 {
        Unavailable::Random => "the provider failed this request (random failure share); nothing was charged, retry",
        Unavailable::Flaky => "the provider is flaky for this reference (tok_flaky); nothing was charged, retry",
    })]
    Unavailable(Unavailable),
    /// 503 `provider_full`: the book holds its most charges; nothing was charged.
    #[error(
        "the provider holds {0} charges, its most; nothing was charged (restart it to empty it)"
    )]
    Full(usize),
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::InvalidRequest(invalid.0)
    }
}

/// The body of every error.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    /// Code and message.
    pub error: ErrorDetail<'a>,
}

/// `{"code", "message"}`.
#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    /// Machine-readable.
    pub code: &'a str,
    /// For a person.
    pub message: String,
}

impl ApiError {
    /// A 400 naming what is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::NoSuchCharge(_) | Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotRefundable(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) | Self::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::NoSuchCharge(_) => "no_such_charge",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotRefundable(_) => "charge_not_refundable",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Unavailable(_) => "provider_unavailable",
            Self::Full(_) => "provider_full",
        }
    }

    /// The JSON answer; a 503 says when to retry.
    pub fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        let mut response = json_response(self.status(), &body);
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_carries_retry_after_and_every_error_its_code() {
        let response = ApiError::Unavailable(Unavailable::Flaky).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::NotRefundable("ch_1".into()).into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(ApiError::Full(3).code(), "provider_full");
    }
}
