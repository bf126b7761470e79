//! The circuit breaker's state machine, pure: every step is told the time, so tests drive it
//! with a clock of their own and nothing here sleeps, locks or talks to a dependency.

use std::time::{Duration, Instant};

/// How long a caller is told to wait while a probe is in flight (half-open): the probe's answer
/// comes within the call timeout, so a second is about right.
const PROBE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// When the breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failed calls in a row that open it.
    pub failures_to_open: u32,
    /// The failures that open it all fall within this span: an older one starts the count again.
    pub window: Duration,
    /// How long it stays open before one call may probe.
    pub open_for: Duration,
}

/// The state as `/metrics` shows it (`flashgate_breaker_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls pass (0).
    Closed = 0,
    /// Calls are refused at once (1).
    Open = 1,
    /// One call probes the dependency; the others are refused (2).
    HalfOpen = 2,
}

/// What the breaker says to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Go ahead; `probe` when this call decides whether the breaker closes.
    Go {
        /// The half-open probe (its outcome closes or reopens the breaker).
        probe: bool,
    },
    /// Refused without trying; the caller may retry after this long.
    Refused {
        /// Time until a probe may go.
        retry_after: Duration,
    },
}

/// How a call that was let through ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The dependency answered (even with an error of its own, such as a constraint).
    Answered,
    /// It did not answer: unreachable, a broken connection, or no answer within the timeout.
    Failed,
    /// The call ended without telling (another dependency failed first, or the caller gave up):
    /// it counts neither way, and a probe's place is free again.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed {
        failures: u32,
        first_failure: Option<Instant>,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        probing: bool,
    },
}

/// One breaker's state.
#[derive(Debug, Clone)]
pub struct Machine {
    policy: Policy,
    inner: Inner,
}

impl Machine {
    /// A closed breaker.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            inner: Inner::Closed {
                failures: 0,
                first_failure: None,
            },
        }
    }

    /// The state.
    pub fn state(&self) -> State {
        match self.inner {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// May a call go at `now`? An open breaker whose time is up lets this one call probe.
    pub fn pass(&mut self, now: Instant) -> Pass {
        match self.inner {
            Inner::Closed { .. } => Pass::Go { probe: false },
            Inner::Open { until } if now < until => Pass::Refused {
                retry_after: until - now,
            },
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                self.inner = Inner::HalfOpen { probing: true };
                Pass::Go { probe: true }
            }
            Inner::HalfOpen { probing: true } => Pass::Refused {
                retry_after: PROBE_RETRY_AFTER,
            },
        }
    }

    /// Records how a call that was let through (`probe` as [`Pass::Go`] said) ended at `now`;
    /// true when this opened the breaker (a trip).
    pub fn record(&mut self, probe: bool, outcome: Outcome, now: Instant) -> bool {
        match (self.inner, probe, outcome) {
            // A call let through before the breaker opened and ending after: the probe decides.
            (Inner::Open { .. } | Inner::HalfOpen { .. }, false, _) => false,
            (_, _, Outcome::Unknown) => {
                if probe {
                    self.inner = Inner::HalfOpen { probing: false };
                }
                false
            }
            (_, _, Outcome::Answered) => {
                self.inner = Inner::Closed {
                    failures: 0,
                    first_failure: None,
                };
                false
            }
            // Only a half-open breaker gives out probes; a failed one opens it again.
            (Inner::Closed { .. } | Inner::Open { .. }, true, Outcome::Failed) => false,
            (Inner::HalfOpen { .. }, true, Outcome::Failed) => self.open(now),
            (
                Inner::Closed {
                    failures,
                    first_failure,
                },
                false,
                Outcome::Failed,
            ) => {
                let (failures, first) = match first_failure {
                    Some(first) if now.saturating_duration_since(first) <= self.policy.window => {
                        (failures + 1, first)
                    }
                    _ => (1, now),
                };
                if failures >= self.policy.failures_to_open {
                    self.open(now)
                } else {
                    self.inner = Inner::Closed {
                        failures,
                        first_failure: Some(first),
                    };
                    false
                }
            }
        }
    }

    fn open(&mut self, now: Instant) -> bool {
        self.inner = Inner::Open {
            until: now + self.policy.open_for,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        failures_to_open: 3,
        window: Duration::from_secs(10),
        open_for: Duration::from_secs(5),
    };

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    fn fail(machine: &mut Machine, now: Instant) -> bool {
        assert_eq!(machine.pass(now), Pass::Go { probe: false });
        machine.record(false, Outcome::Failed, now)
    }

    #[test]
    fn it_opens_after_the_configured_failures_in_a_row_and_refuses_until_the_cool_down_ends() {
        let t0 = Instant::now();
        let mut machine = Machine::new(POLICY);
        assert!(!fail(&mut machine, t0));
        assert!(!fail(&mut machine, at(t0, 100)));
        assert_eq!(machine.state(), State::Closed);
        assert!(
            fail(&mut machine, at(t0, 200)),
            "the third failure trips it"
        );
        assert_eq!(machine.state(), State::Open);
        assert_eq!(
            machine.pass(at(t0, 1_200)),
            Pass::Refused {
                retry_after: Duration::from_millis(4_000)
            }
        );
        assert_eq!(machine.state(), State::Open);
    }

    #[test]
    fn an_answer_between_failures_starts_the_count_again() {
        let t0 = Instant::now();
        let mut machine = Machine::new(POLICY);
        fail(&mut machine, t0);
        fail(&mut machine, t0);
        assert_eq!(machine.pass(t0), Pass::Go { probe: false });
        machine.record(false, Outcome::Answered, t0);
        fail(&mut machine, t0);
        fail(&mut machine, t0);
        assert_eq!(machine.state(), State::Closed);
        assert!(fail(&mut machine, t0));
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_open_it() {
        let t0 = Instant::now();
        let mut machine = Machine::new(POLICY);
        fail(&mut machine, t0);
        fail(&mut machine, at(t0, 9_000));
        // 10.5 s after the first: the count starts again at this one.
        assert!(!fail(&mut machine, at(t0, 10_500)));
        assert!(!fail(&mut machine, at(t0, 11_000)));
        assert_eq!(machine.state(), State::Closed);
        assert!(fail(&mut machine, at(t0, 12_000)));
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_and_the_others_are_refused_until_it_ends() {
        let t0 = Instant::now();
        let mut machine = Machine::new(Policy {
            failures_to_open: 1,
            ..POLICY
        });
        assert!(fail(&mut machine, t0));
        let later = at(t0, 5_000);
        assert_eq!(machine.pass(later), Pass::Go { probe: true });
        assert_eq!(machine.state(), State::HalfOpen);
        assert_eq!(
            machine.pass(later),
            Pass::Refused {
                retry_after: PROBE_RETRY_AFTER
            }
        );
        assert!(!machine.record(true, Outcome::Answered, later));
        assert_eq!(machine.state(), State::Closed);
        assert_eq!(machine.pass(later), Pass::Go { probe: false });
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_another_cool_down() {
        let t0 = Instant::now();
        let mut machine = Machine::new(Policy {
            failures_to_open: 1,
            ..POLICY
        });
        fail(&mut machine, t0);
        let probe_at = at(t0, 6_000);
        assert_eq!(machine.pass(probe_at), Pass::Go { probe: true });
        assert!(
            machine.record(true, Outcome::Failed, at(t0, 6_500)),
            "a trip"
        );
        assert_eq!(machine.state(), State::Open);
        assert_eq!(
            machine.pass(at(t0, 7_500)),
            Pass::Refused {
                retry_after: Duration::from_millis(4_000)
            }
        );
        assert_eq!(machine.pass(at(t0, 11_500)), Pass::Go { probe: true });
    }

    #[test]
    fn a_probe_that_ends_without_telling_frees_its_place_for_the_next_call() {
        let t0 = Instant::now();
        let mut machine = Machine::new(Policy {
            failures_to_open: 1,
            ..POLICY
        });
        fail(&mut machine, t0);
        let later = at(t0, 5_000);
        assert_eq!(machine.pass(later), Pass::Go { probe: true });
        machine.record(true, Outcome::Unknown, later);
        assert_eq!(machine.state(), State::HalfOpen);
        assert_eq!(machine.pass(later), Pass::Go { probe: true });
    }

    #[test]
    fn calls_let_through_before_it_opened_do_not_decide_for_the_probe() {
        let t0 = Instant::now();
        let mut machine = Machine::new(Policy {
            failures_to_open: 1,
            ..POLICY
        });
        assert_eq!(machine.pass(t0), Pass::Go { probe: false });
        fail(&mut machine, t0);
        // The slow call let through earlier answers while the breaker is open.
        assert!(!machine.record(false, Outcome::Answered, at(t0, 100)));
        assert_eq!(machine.state(), State::Open);
        let later = at(t0, 5_000);
        assert_eq!(machine.pass(later), Pass::Go { probe: true });
        assert!(!machine.record(false, Outcome::Failed, later));
        assert_eq!(machine.state(), State::HalfOpen);
    }
}
