//! The one API error type, mapped to the HTTP error contract in one place: every domain
//! failure becomes an answer here, and is counted against its dependency here.

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::breaker::Unavailable;
use crate::failure::{Failure, Invalid};
use crate::http::response::{Response, json_response};
use crate::limits::Refusal;
use crate::metrics::{Dependency, Metrics};
use crate::scripts::may_have_run;

/// Everything a request can end with other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed body, wrong content type, unknown field, value out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401: missing, malformed, expired or wrongly signed token.
    #[error("{0}")]
    Unauthenticated(String),
    /// 401 `token_revoked`: a valid token that was revoked (logout, or all of its user's).
    #[error("{0}")]
    TokenRevoked(&'static str),
    /// 403: a valid token without the role the route needs.
    #[error("this route needs the `{0}` role")]
    Forbidden(&'static str),
    /// 403 `queue_pass_required`: the sale is behind a waiting room and the purchase carried
    /// no valid `Queue-Pass` for this user and sale.
    #[error(
        "this sale admits shoppers through its waiting room: join it (POST \
         /v1/sales/{{id}}/queue) and send the pass it gives as the Queue-Pass header"
    )]
    QueuePassRequired,
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
    /// 429 `rate_limited`: a rate limit of the route's class refused the request; the client
    /// retries after `Retry-After` (the `RateLimit` headers say which limit).
    #[error("too many requests; retry after {} s", .0.retry_after())]
    RateLimited(Refusal),
    /// 503 `overloaded`: the system sheds load; the client retries after `Retry-After`.
    #[error("{0}")]
    Overloaded(Overload),
    /// 503 `dependency_unavailable`: a dependency the route reads (MySQL) does not answer, or
    /// its breaker is open; the client retries after `Retry-After`.
    #[error(transparent)]
    DependencyUnavailable(Unavailable),
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
    /// A domain failure, answered (and counted) when the response is made.
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// Why a request is shed with 503 `overloaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overload {
    /// The request ran past the configured request timeout.
    #[error("the request took too long; retry shortly")]
    Timeout,
    /// Redis did not answer (`subject`: what cannot be reached, "the sale", "the service").
    #[error("{0} cannot be reached right now; retry shortly")]
    Unreachable(&'static str),
    /// An outbox is over its bound (Kafka is behind or down): `{0}` are waiting.
    #[error("too many {0} waiting to be recorded; retry shortly")]
    Backlog(&'static str),
    /// Past `gateway.redis_max_in_flight` calls waiting on Redis: shed without trying.
    #[error("the service is busy; retry shortly")]
    Busy,
}

impl Overload {
    /// Seconds the client should wait: a backlog drains slower than a blip passes.
    fn retry_after(self) -> u32 {
        match self {
            Self::Timeout | Self::Unreachable(_) | Self::Busy => 1,
            Self::Backlog(_) => 2,
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::InvalidRequest(invalid.0)
    }
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

    /// 503 `overloaded` with its `Retry-After`.
    pub fn overloaded(why: Overload) -> Self {
        Self::Overloaded(why)
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

    /// A domain failure as the client sees it; a failed dependency is counted here, once.
    fn answer(failure: Failure, metrics: &Metrics) -> Self {
        match failure {
            Failure::Invalid(invalid) => invalid.into(),
            Failure::Unreachable { action, source } => {
                metrics.dependency_error(Dependency::Redis);
                tracing::warn!(action, error = %source, "Redis script failed");
                if may_have_run(&source) {
                    // It may have taken effect: a plain "retry" could do it twice without a key.
                    Self::OutcomeUnknown
                } else {
                    let subject = if action == "purchase" {
                        "the sale"
                    } else {
                        "the service"
                    };
                    Self::overloaded(Overload::Unreachable(subject))
                }
            }
            Failure::Mysql(err) => {
                metrics.dependency_error(Dependency::Mysql);
                Self::Internal(err)
            }
            Failure::Redis(err) => {
                metrics.dependency_error(Dependency::Redis);
                Self::Internal(err)
            }
            Failure::Unavailable(unavailable) => {
                if let Some(cause) = &unavailable.cause {
                    metrics.dependency_error(unavailable.dependency);
                    tracing::warn!(error = format!("{cause:#}"), "{unavailable}");
                }
                Self::DependencyUnavailable(unavailable)
            }
            Failure::Shed => Self::overloaded(Overload::Busy),
            Failure::Internal(err) => Self::Internal(err),
        }
    }

    /// The HTTP status of this error (a domain failure not yet answered counts as a 500).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) | Self::TokenRevoked(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::QueuePassRequired => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded(_) | Self::DependencyUnavailable(_) | Self::OutcomeUnknown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) | Self::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code of the contract.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::TokenRevoked(_) => "token_revoked",
            Self::Forbidden(_) => "forbidden",
            Self::QueuePassRequired => "queue_pass_required",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict { code, .. } => code,
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::RateLimited(_) => "rate_limited",
            Self::Overloaded(_) => "overloaded",
            Self::DependencyUnavailable(_) => "dependency_unavailable",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Internal(_) | Self::Failed(_) => "internal",
        }
    }

    /// The JSON response. A domain failure is answered and counted here; an internal error is
    /// logged here, once, with its cause chain.
    pub fn into_response(self, metrics: &Metrics) -> Response {
        let error = match self {
            Self::Failed(failure) => Self::answer(failure, metrics),
            other => other,
        };
        let message = match &error {
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: error.code(),
                message,
            },
        };
        let mut response = json_response(error.status(), &body);
        let retry_after = match &error {
            Self::Overloaded(why) => Some(why.retry_after()),
            // Soon: the answer is known as soon as Redis answers again.
            Self::OutcomeUnknown => Some(1),
            Self::DependencyUnavailable(unavailable) => Some(unavailable.retry_after_secs()),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Self::RateLimited(refusal) = &error {
            metrics.observe_rate_limited(refusal.class.name(), refusal.key.name());
            refusal.add_headers(response.headers_mut());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause_from_the_client() {
        let response = ApiError::Internal(anyhow::anyhow!("password=hunter2 in a stack"))
            .into_response(&Metrics::default());
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = crate::http::response::body_text(&response);
        assert!(!body.contains("hunter2"), "{body}");
        assert!(body.contains(r#""code":"internal""#), "{body}");
    }

    #[test]
    fn overloaded_carries_retry_after() {
        let response =
            ApiError::overloaded(Overload::Backlog("orders")).into_response(&Metrics::default());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn an_unavailable_dependency_is_503_with_retry_after_and_counted_only_when_it_was_tried() {
        let metrics = Metrics::default();
        let unavailable = |cause| {
            Failure::Unavailable(crate::breaker::Unavailable {
                dependency: crate::metrics::Dependency::Mysql,
                retry_after: std::time::Duration::from_millis(1_500),
                cause,
            })
        };
        let response = ApiError::from(unavailable(None)).into_response(&metrics);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = crate::http::response::body_text(&response);
        assert!(
            body.contains(r#""code":"dependency_unavailable""#),
            "{body}"
        );
        assert!(body.contains("MySQL is unavailable"), "{body}");
        let tried = unavailable(Some(anyhow::anyhow!("no answer within 300 ms")));
        let response = ApiError::from(tried).into_response(&metrics);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(dependency_errors(&metrics).contains(r#"{dependency="mysql"} 1"#));
        let response = ApiError::from(Failure::Shed).into_response(&metrics);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(crate::http::response::body_text(&response).contains(r#""code":"overloaded""#));
    }

    #[test]
    fn an_unknown_outcome_is_503_telling_to_retry_with_the_same_key() {
        let response = ApiError::OutcomeUnknown.into_response(&Metrics::default());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = crate::http::response::body_text(&response);
        assert!(body.contains(r#""code":"outcome_unknown""#), "{body}");
        assert!(body.contains("same Idempotency-Key"), "{body}");
    }

    fn dependency_errors(metrics: &Metrics) -> String {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("flashgate_dependency_errors_total{"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn failures_are_answered_and_counted_against_their_dependency_once() {
        let metrics = Metrics::default();
        let lost = fred::error::Error::new(fred::error::ErrorKind::Timeout, "timed out");
        let response = ApiError::from(Failure::unreachable("claim")(lost)).into_response(&metrics);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(crate::http::response::body_text(&response).contains("outcome_unknown"));
        let refused = fred::error::Error::new(fred::error::ErrorKind::Unknown, "READONLY replica");
        let response =
            ApiError::from(Failure::unreachable("claim")(refused)).into_response(&metrics);
        assert!(crate::http::response::body_text(&response).contains(r#""code":"overloaded""#));
        let response =
            ApiError::from(Failure::Mysql(anyhow::anyhow!("gone"))).into_response(&metrics);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let response = ApiError::from(Failure::Internal(anyhow::anyhow!("the cache kept moving")))
            .into_response(&metrics);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            dependency_errors(&metrics),
            r#"flashgate_dependency_errors_total{dependency="redis"} 2 flashgate_dependency_errors_total{dependency="kafka"} 0 flashgate_dependency_errors_total{dependency="mysql"} 1"#
        );
    }

    #[test]
    fn an_invalid_input_is_400_naming_the_field() {
        let response = ApiError::from(Failure::from(Invalid::new("quantity: too many")))
            .into_response(&Metrics::default());
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(crate::http::response::body_text(&response).contains("quantity: too many"));
    }
}
