//! When a step that failed for a passing reason (the provider timed out or answered 5xx, Redis
//! was unreachable) is tried again: capped exponential backoff with full jitter, and for a
//! payment not yet charged never past its `give_up_at`.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The settings of the backoff (`saga.retry_base_ms`, `saga.retry_cap_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First ceiling, in milliseconds.
    pub base_ms: u64,
    /// Largest ceiling, in milliseconds.
    pub cap_ms: u64,
}

impl Backoff {
    /// The ceiling of the `retry`-th retry (0 for the first): `base · 2^retry`, at most the cap.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doubled = self.base_ms.saturating_mul(1u64 << retry.min(32));
        Duration::from_millis(doubled.min(self.cap_ms))
    }

    /// The delay of the `retry`-th retry: uniform in `[0, ceiling]` ("full jitter"), so the
    /// payments a provider outage failed together do not come back together. `random` is any
    /// random number (the caller draws it: this stays a pure function).
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(random % ceiling.saturating_add(1))
    }
}

/// When to try again: `now + delay`, but a payment not yet charged (`capped`) is tried no
/// later than its `give_up_at`, when it is given up.
pub fn retry_at(
    now: DateTime<Utc>,
    delay: Duration,
    give_up_at: DateTime<Utc>,
    capped: bool,
) -> DateTime<Utc> {
    let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    if capped {
        at.min(give_up_at.max(now))
    } else {
        at
    }
}

/// A random number for the jitter (from the operating system's generator, through uuid v4).
pub fn random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        base_ms: 200,
        cap_ms: 5_000,
    };

    #[test]
    fn the_ceiling_doubles_from_the_base_and_stops_at_the_cap() {
        let ceilings: Vec<u64> = (0..7)
            .map(|n| BACKOFF.ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(BACKOFF.ceiling(u32::MAX), Duration::from_millis(5_000));
    }

    #[test]
    fn a_delay_stays_between_zero_and_its_ceiling_for_any_random_number() {
        for retry in 0..40 {
            for random in [0, 1, 199, 200, 201, 4_999, 5_000, u64::MAX / 3, u64::MAX] {
                let delay = BACKOFF.delay(retry, random);
                assert!(
                    delay <= BACKOFF.ceiling(retry),
                    "{retry} {random} {delay:?}"
                );
            }
        }
        assert_eq!(BACKOFF.delay(0, 200), Duration::from_millis(200));
        assert_eq!(BACKOFF.delay(0, 201), Duration::ZERO);
        // Spread over the whole range, not clustered at the ceiling.
        let delays: std::collections::BTreeSet<u128> = (0..200)
            .map(|_| BACKOFF.delay(3, random()).as_millis() / 400)
            .collect();
        assert!(delays.len() >= 3, "{delays:?}");
    }

    #[test]
    fn a_payment_not_charged_is_never_retried_after_it_is_given_up() {
        let now = DateTime::from_timestamp_millis(1_700_000_000_000).expect("time");
        let give_up_at = now + chrono::Duration::milliseconds(1_000);
        let five = Duration::from_secs(5);
        assert_eq!(retry_at(now, five, give_up_at, true), give_up_at);
        assert_eq!(
            retry_at(now, Duration::from_millis(300), give_up_at, true),
            now + chrono::Duration::milliseconds(300)
        );
        // Charged money, or an order to end, is retried until it is done.
        assert_eq!(
            retry_at(now, five, give_up_at, false),
            now + chrono::Duration::seconds(5)
        );
        // Already past it: due now (and given up then), never in the past.
        let past = now - chrono::Duration::seconds(10);
        assert_eq!(retry_at(now, five, past, true), now);
    }
}
