//! Why a call to a dependency was not made or not answered: the answer a breaker gives, which
//! `http/error.rs` turns into 503 `dependency_unavailable` with `Retry-After`.

use std::time::Duration;

use crate::metrics::Dependency;

/// A dependency the gateway cannot use right now.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is unavailable right now; retry after {} s",
    name(self.dependency),
    self.retry_after_secs()
)]
pub struct Unavailable {
    /// The dependency.
    pub dependency: Dependency,
    /// When a retry may find it back.
    pub retry_after: Duration,
    /// What the call ran into, for the log and the dependency's error count; `None` when the
    /// open breaker refused the call without trying (no new failure of the dependency).
    pub cause: Option<anyhow::Error>,
}

impl Unavailable {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u32 {
        let secs = self.retry_after.as_secs();
        let rounded = if self.retry_after.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        };
        u32::try_from(rounded).unwrap_or(u32::MAX).max(1)
    }
}

/// The dependency's name as clients and logs read it.
fn name(dependency: Dependency) -> &'static str {
    match dependency {
        Dependency::Redis => "Redis",
        Dependency::Kafka => "Kafka",
        Dependency::Mysql => "MySQL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        let after = |millis| Unavailable {
            dependency: Dependency::Mysql,
            retry_after: Duration::from_millis(millis),
            cause: None,
        };
        assert_eq!(after(0).retry_after_secs(), 1);
        assert_eq!(after(200).retry_after_secs(), 1);
        assert_eq!(after(1_000).retry_after_secs(), 1);
        assert_eq!(after(4_001).retry_after_secs(), 5);
    }
}
