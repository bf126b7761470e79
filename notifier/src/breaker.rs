//! An endpoint's circuit breaker and the retry schedule of its deliveries, as pure values
//! (the caller passes the clock and the random number), so both are unit-tested here.
//!
//! The breaker opens after `failures` failed attempts in a row; while open it refuses every
//! attempt at once (no connection, no timeout: one dead endpoint costs nothing to the others
//! or to its own queue); after `open_for` it lets one probe through (half-open), which closes
//! it on success or opens it again on failure.

use std::time::{Duration, Instant};

/// The state shown on `/metrics` (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Attempts go through.
    Closed,
    /// Attempts are refused until the pause is over.
    Open,
    /// One probe is in flight; the others are refused.
    HalfOpen,
}

impl State {
    /// The gauge's value.
    pub fn gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    /// Failures in a row that open it.
    failures: u32,
    /// How long it stays open before a probe.
    open_for: Duration,
    /// Failures in a row so far.
    in_a_row: u32,
    /// Open until then (`None`: closed, or half-open when `probing`).
    open_until: Option<Instant>,
    /// A probe is in flight.
    probing: bool,
}

impl Breaker {
    /// A closed breaker that opens after `failures` in a row for `open_for`.
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Self {
            failures: failures.max(1),
            open_for,
            in_a_row: 0,
            open_until: None,
            probing: false,
        }
    }

    /// Whether an attempt may go through at `now` (a probe, when the pause is over).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.open_until {
            None if self.probing => false,
            None => true,
            Some(until) if now < until => false,
            Some(_) => {
                self.open_until = None;
                self.probing = true;
                true
            }
        }
    }

    /// Records an attempt's outcome at `now`.
    pub fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            self.in_a_row = 0;
            self.open_until = None;
            self.probing = false;
            return;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.probing || self.in_a_row >= self.failures {
            self.probing = false;
            self.open_until = Some(now + self.open_for);
        }
    }

    /// Where it stands at `now`.
    pub fn state(&self, now: Instant) -> State {
        match self.open_until {
            Some(until) if now < until => State::Open,
            Some(_) => State::HalfOpen,
            None if self.probing => State::HalfOpen,
            None => State::Closed,
        }
    }
}

/// Capped exponential backoff with full jitter (`notifier.retry_base_ms`, `retry_cap_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First ceiling, in milliseconds.
    pub base_ms: u64,
    /// Largest ceiling, in milliseconds.
    pub cap_ms: u64,
}

impl Backoff {
    /// The wait after the `attempt`-th failed attempt (1 for the first): uniform in
    /// `[ceiling / 2, ceiling]` with `ceiling = min(base · 2^(attempt-1), cap)`. Half of it is
    /// jitter, so deliveries an outage failed together do not come back together, and half is
    /// kept so a retry never comes at once.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.cap_ms);
        let half = ceiling / 2;
        Duration::from_millis(half + random % (ceiling - half + 1))
    }
}

/// A random number for the jitter (the operating system's generator, through uuid v4).
pub fn random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_then_lets_one_probe_through() {
        let start = Instant::now();
        let mut breaker = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(breaker.allow(start));
            breaker.record(false, start);
        }
        breaker.record(true, start);
        for _ in 0..3 {
            assert!(breaker.allow(start));
            breaker.record(false, start);
        }
        assert_eq!(breaker.state(start), State::Open);
        assert!(!breaker.allow(start + Duration::from_secs(9)));
        let later = start + Duration::from_secs(10);
        assert!(breaker.allow(later), "one probe after the pause");
        assert!(!breaker.allow(later), "only one");
        assert_eq!(breaker.state(later), State::HalfOpen);
        breaker.record(false, later);
        assert_eq!(
            breaker.state(later),
            State::Open,
            "a failed probe opens it again"
        );
        let again = later + Duration::from_secs(10);
        assert!(breaker.allow(again));
        breaker.record(true, again);
        assert_eq!(breaker.state(again), State::Closed);
        assert!(breaker.allow(again) && breaker.allow(again));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_keeps_half_of_it() {
        let backoff = Backoff {
            base_ms: 100,
            cap_ms: 1_000,
        };
        assert_eq!(backoff.delay(1, 0), Duration::from_millis(50));
        assert_eq!(backoff.delay(1, 50), Duration::from_millis(100));
        let third = backoff.delay(3, u64::MAX);
        assert!((200..=400).contains(&third.as_millis()), "{third:?}");
        for attempt in 1..64 {
            for random in [0, 7, u64::MAX] {
                let delay = backoff.delay(attempt, random);
                assert!(
                    delay <= Duration::from_millis(1_000),
                    "{attempt}: {delay:?}"
                );
                assert!(delay >= Duration::from_millis(50), "{attempt}: {delay:?}");
            }
        }
        assert!(backoff.delay(10, 0) >= Duration::from_millis(500));
    }
}
