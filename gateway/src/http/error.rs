//! The one API error type, mapped to the HTTP error contract in one place.

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::http::response::{Response, json_response};

/// Everything a request can end with other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed body, wrong content type, unknown field, value out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401: missing, malformed, expired or wrongly signed token.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: a valid token without the role the route needs.
    #[error("this route needs the `{0}` role")]
    Forbidden(&'static str),
    /// 404: no such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: a business rule said no (`sold_out`, `limit_exceeded`, `sale_not_active`, ...).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 413: the body is larger than the configured limit.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: the body is not JSON.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// 422: the idempotency key was used before with another request.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// 503: the system sheds load (outbox over its bound, dependency down, draining).
    #[error("{message}")]
    Overloaded {
        /// Seconds the client should wait before retrying.
        retry_after: u32,
        /// Why.
        message: String,
    },
    /// 503: a call that changes state was sent to Redis and its answer was lost (a timeout, a
    /// closed connection): it may have taken effect or not. The same request with the same
    /// `Idempotency-Key` answers what happened (and does it if it did not happen).
    #[error(
        "the outcome of this request is unknown: it may have taken effect; retry it with the \
         same Idempotency-Key to get its answer (without one, check before retrying)"
    )]
    OutcomeUnknown,
    /// 500: the server's own fault. The cause is logged once; the client sees a generic text.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    /// Shorthand for a 400 naming what is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    /// Shorthand for a 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// 409 `discount_exceeds_amount`: the coupons and points applied to one order may not sum
    /// past its `amount`; `applied` of it is taken already.
    pub fn discount_exceeds_amount(amount: u64, applied: u64) -> Self {
        let left = amount.saturating_sub(applied);
        Self::conflict(
            "discount_exceeds_amount",
            if left == 0 {
                format!(
                    "the order's amount of {amount} is covered in full by the coupons and \
                     points applied to it"
                )
            } else {
                format!(
                    "coupons and points may not exceed the order's amount of {amount}: \
                     {applied} is applied already, at most {left} more can be"
                )
            },
        )
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Overloaded { .. } | Self::OutcomeUnknown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code of the contract.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict { code, .. } => code,
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Overloaded { .. } => "overloaded",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON response; an internal error is logged here, once, with its cause chain.
    pub fn into_response(self) -> Response {
        let message = match &self {
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
            },
        };
        let mut response = json_response(self.status(), &body);
        let retry_after = match &self {
            Self::Overloaded { retry_after, .. } => Some(*retry_after),
            // Soon: the answer is known as soon as Redis answers again.
            Self::OutcomeUnknown => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause_from_the_client() {
        let response =
            ApiError::Internal(anyhow::anyhow!("password=hunter2 in a stack")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = crate::http::response::body_text(&response);
        assert!(!body.contains("hunter2"), "{body}");
        assert!(body.contains(r#""code":"internal""#), "{body}");
    }

    #[test]
    fn overloaded_carries_retry_after() {
        let response = ApiError::Overloaded {
            retry_after: 2,
            message: "busy".into(),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn an_unknown_outcome_is_503_telling_to_retry_with_the_same_key() {
        let response = ApiError::OutcomeUnknown.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = crate::http::response::body_text(&response);
        assert!(body.contains(r#""code":"outcome_unknown""#), "{body}");
        assert!(body.contains("same Idempotency-Key"), "{body}");
    }
}
