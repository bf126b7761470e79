//! The `RateLimit-Policy` and `RateLimit` header fields of draft-ietf-httpapi-ratelimit-headers
//! (-10 to -12: Structured Field lists whose members are a policy name, an SF String, with
//! parameters; policy: `q` quota, `w` window in seconds; current state: `r` quota left, `t`
//! seconds until more quota is available), and the 429 answer that carries them.

use std::fmt::Write as _;

use flashgate_config::{Limit, RateClass, RateKey};
use http::{HeaderMap, HeaderValue, header};

/// `RateLimit-Policy`.
pub const POLICY: &str = "ratelimit-policy";
/// `RateLimit`.
pub const STATE: &str = "ratelimit";

/// A policy's name: `"<class>-<key>"`, e.g. `"purchase-user"`.
pub fn policy_name(class: RateClass, key: RateKey) -> String {
    format!("{}-{}", class.name(), key.name())
}

/// One member of `RateLimit-Policy`: the burst as the quota over the window it refills in
/// (`q=10;w=2` for 5/s with a burst of 10); when the burst is not a whole number of seconds'
/// worth, the sustained rate per second (`q=rate;w=1`).
pub fn policy_member(class: RateClass, key: RateKey, limit: Limit) -> String {
    let (quota, window) = if limit.burst.is_multiple_of(limit.rate) {
        (limit.burst, limit.burst / limit.rate)
    } else {
        (limit.rate, 1)
    };
    format!("\"{}\";q={quota};w={window}", policy_name(class, key))
}

/// The `RateLimit-Policy` value of a class: one member per limit in force (`None`: no limit).
pub fn policy_value(members: &[String]) -> Option<HeaderValue> {
    if members.is_empty() {
        return None;
    }
    HeaderValue::from_str(&members.join(", ")).ok()
}

/// Whole seconds covering `micros` (what `t` and `Retry-After` count in), at least `floor`.
pub fn seconds(micros: u64, floor: u64) -> u64 {
    micros.div_ceil(1_000_000).max(floor)
}

/// One member of `RateLimit`: `"purchase-user";r=3;t=1`.
pub fn state_member(class: RateClass, key: RateKey, remaining: u64, next_us: u64) -> String {
    let mut out = String::with_capacity(32);
    let _ = write!(
        out,
        "\"{}\";r={remaining};t={}",
        policy_name(class, key),
        seconds(next_us, 0)
    );
    out
}

/// A request a limit refused: which limit, and how long until it would be allowed.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The route's class.
    pub class: RateClass,
    /// The limit that refused (per user or per address).
    pub key: RateKey,
    /// Microseconds until the request would be allowed.
    pub retry_us: u64,
    /// The class's `RateLimit-Policy`.
    pub policy: Option<HeaderValue>,
}

impl Refusal {
    /// Seconds the client should wait: `Retry-After` (at least 1: 0 would invite a retry
    /// storm in the same second).
    pub fn retry_after(&self) -> u64 {
        seconds(self.retry_us, 1)
    }

    /// Adds `Retry-After`, `RateLimit-Policy` and `RateLimit` (nothing left, and when more
    /// comes) to a 429.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        let retry = self.retry_after();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry));
        if let Some(policy) = &self.policy {
            headers.insert(POLICY, policy.clone());
        }
        let state = format!("\"{}\";r=0;t={retry}", policy_name(self.class, self.key));
        if let Ok(value) = HeaderValue::from_str(&state) {
            headers.insert(STATE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_each_limit_with_its_quota_and_window() {
        let members = [
            policy_member(
                RateClass::Purchase,
                RateKey::User,
                Limit { rate: 5, burst: 10 },
            ),
            policy_member(
                RateClass::Purchase,
                RateKey::Address,
                Limit { rate: 3, burst: 4 },
            ),
        ];
        assert_eq!(
            policy_value(&members).unwrap(),
            r#""purchase-user";q=10;w=2, "purchase-address";q=3;w=1"#
        );
        assert_eq!(policy_value(&[]), None);
    }

    #[test]
    fn the_state_counts_what_is_left_and_whole_seconds_until_more() {
        assert_eq!(
            state_member(RateClass::Read, RateKey::User, 39, 50_000),
            r#""read-user";r=39;t=1"#
        );
        assert_eq!(
            state_member(RateClass::Read, RateKey::User, 0, 2_000_000),
            r#""read-user";r=0;t=2"#
        );
        assert_eq!(seconds(0, 0), 0);
        assert_eq!(seconds(1, 0), 1);
    }

    #[test]
    fn a_refusal_says_when_to_retry_in_every_header() {
        let refusal = Refusal {
            class: RateClass::Claim,
            key: RateKey::User,
            retry_us: 1_200_000,
            policy: policy_value(&[policy_member(
                RateClass::Claim,
                RateKey::User,
                Limit { rate: 5, burst: 10 },
            )]),
        };
        let mut headers = HeaderMap::new();
        refusal.add_headers(&mut headers);
        assert_eq!(headers[header::RETRY_AFTER], "2");
        assert_eq!(headers[POLICY], r#""claim-user";q=10;w=2"#);
        assert_eq!(headers[STATE], r#""claim-user";r=0;t=2"#);
        let soon = Refusal {
            retry_us: 10,
            ..refusal
        };
        assert_eq!(soon.retry_after(), 1, "never 0");
    }
}
