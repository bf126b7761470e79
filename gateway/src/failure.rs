//! Why a domain action ended without an outcome: the client's input was invalid, or a
//! dependency (or the gateway itself) failed. Business refusals are outcomes, not failures;
//! `http/error.rs` alone turns a failure into an HTTP answer (and counts it).

/// A request the domain refuses to consider: 400 `invalid_request`, the message naming the
/// field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// The field and what is wrong with it (`quantity: must be between 1 and 1000`).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// What stopped a domain action.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The input breaks a rule of the domain.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// A shopper's action could not reach Redis, or lost its answer: 503 (`outcome_unknown`
    /// when the script may have run).
    #[error("{action}: {source}")]
    Unreachable {
        /// What was attempted (`purchase`, `claim`, `points use`, ...), for the log.
        action: &'static str,
        /// The client's error.
        source: fred::error::Error,
    },
    /// A dependency did not answer in time, or its breaker is open: 503
    /// `dependency_unavailable` with `Retry-After` (counted as the dependency's failure when
    /// a call was tried).
    #[error(transparent)]
    Unavailable(#[from] crate::breaker::Unavailable),
    /// Past `gateway.redis_max_in_flight` calls waiting on Redis: shed at once, 503
    /// `overloaded`, nothing tried.
    #[error("too many calls waiting on Redis")]
    Shed,
    /// MySQL failed: counted as a MySQL failure, then a generic 500.
    #[error("MySQL: {0:#}")]
    Mysql(anyhow::Error),
    /// Redis failed outside a shopper's action (a manager's view, a load): counted as a Redis
    /// failure, then a generic 500.
    #[error("Redis: {0:#}")]
    Redis(anyhow::Error),
    /// The gateway's own fault, or a state no dependency is to blame for (a cache that keeps
    /// moving under a rebuild): a generic 500, not counted against a dependency.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl Failure {
    /// A shopper's `action` that Redis did not answer.
    pub fn unreachable(action: &'static str) -> impl FnOnce(fred::error::Error) -> Self {
        move |source| Self::Unreachable { action, source }
    }

    /// MySQL failed (for `map_err`).
    pub fn mysql(err: impl Into<anyhow::Error>) -> Self {
        Self::Mysql(err.into())
    }

    /// Redis failed outside a shopper's action (for `map_err`).
    pub fn redis(err: impl Into<anyhow::Error>) -> Self {
        Self::Redis(err.into())
    }
}
