//! The MySQL breaker of the routes that read MySQL (order history, coupons, points, admin
//! views): each call runs within `gateway.breaker.mysql_timeout_ms`; calls MySQL does not
//! answer open the breaker (see `machine.rs`), and while it is open they are refused at once
//! with 503 `dependency_unavailable`, so a dead database costs one timeout per probe instead
//! of one per request. Purchases and claims never come here: they do not read MySQL.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flashgate_config::BreakerSettings;

use crate::breaker::machine::{Machine, Outcome, Pass, Policy, State};
use crate::breaker::unavailable::Unavailable;
use crate::failure::Failure;
use crate::metrics::Dependency;

/// Where the breaker reads the time: the process's monotonic clock, or a test's own.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
}

/// The monotonic clock of the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The breaker in front of MySQL, shared by every request of one gateway.
pub struct MysqlBreaker<C: Clock = MonotonicClock> {
    // Held only to step the machine (no await inside): the read routes are not the hot path.
    machine: Mutex<Machine>,
    clock: C,
    timeout: Duration,
    open_for: Duration,
    trips: AtomicU64,
    refused: AtomicU64,
}

impl MysqlBreaker {
    /// A closed breaker with the configured policy and timeout.
    pub fn new(settings: &BreakerSettings) -> Self {
        Self::with_clock(settings, MonotonicClock)
    }
}

impl<C: Clock> MysqlBreaker<C> {
    /// A closed breaker reading the time from `clock`.
    pub fn with_clock(settings: &BreakerSettings, clock: C) -> Self {
        Self {
            machine: Mutex::new(Machine::new(Policy {
                failures_to_open: settings.failures_to_open,
                window: settings.failure_window(),
                open_for: settings.open_for(),
            })),
            clock,
            timeout: settings.mysql_timeout(),
            open_for: settings.open_for(),
            trips: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.machine.lock().expect("breaker lock").state()
    }

    /// How often it opened.
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// How many calls it refused without trying.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Runs `call`, a MySQL read (which may read Redis too), through the breaker: refused at
    /// once while it is open; otherwise given the configured time. No answer in time, or an
    /// error of the connection (not of the query), counts as MySQL failing and is answered
    /// as [`Failure::Unavailable`]; any other outcome is MySQL answering.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let permit = self.permit()?;
        let ended = tokio::time::timeout(self.timeout, call).await;
        let outcome = match &ended {
            Ok(Ok(_)) => Outcome::Answered,
            Ok(Err(Failure::Mysql(err))) if !answered(err) => Outcome::Failed,
            Ok(Err(Failure::Mysql(_))) => Outcome::Answered,
            // Another dependency failed (Redis), or the input was refused: MySQL did not speak.
            Ok(Err(_)) => Outcome::Unknown,
            Err(_) => Outcome::Failed,
        };
        let tripped = permit.end(outcome);
        match ended {
            Ok(Err(Failure::Mysql(err))) if outcome == Outcome::Failed => {
                Err(self.unavailable(err, tripped))
            }
            Ok(result) => result,
            Err(_) => Err(self.unavailable(
                anyhow::anyhow!("no answer within {} ms", self.timeout.as_millis()),
                tripped,
            )),
        }
    }

    /// The answer to a call MySQL did not answer (`tripped`: it opened the breaker).
    fn unavailable(&self, cause: anyhow::Error, tripped: bool) -> Failure {
        Failure::Unavailable(Unavailable {
            dependency: Dependency::Mysql,
            // Just opened: nothing is tried again before the breaker lets a probe go.
            retry_after: if tripped {
                self.open_for
            } else {
                Duration::from_secs(1)
            },
            cause: Some(cause),
        })
    }

    fn permit(&self) -> Result<Permit<'_, C>, Failure> {
        let pass = self
            .machine
            .lock()
            .expect("breaker lock")
            .pass(self.clock.now());
        match pass {
            Pass::Go { probe } => {
                if probe {
                    tracing::info!("MySQL breaker half-open: one call probes MySQL");
                }
                Ok(Permit {
                    breaker: self,
                    probe,
                    ended: false,
                })
            }
            Pass::Refused { retry_after } => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Unavailable(Unavailable {
                    dependency: Dependency::Mysql,
                    retry_after,
                    cause: None,
                }))
            }
        }
    }

    /// Records a call's outcome; true when it opened the breaker.
    fn record(&self, probe: bool, outcome: Outcome) -> bool {
        let mut machine = self.machine.lock().expect("breaker lock");
        let before = machine.state();
        let tripped = machine.record(probe, outcome, self.clock.now());
        let after = machine.state();
        drop(machine);
        if tripped {
            self.trips.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                open_ms = self.open_for.as_millis(),
                "MySQL breaker open: the routes that read MySQL answer 503 until a probe succeeds"
            );
        } else if before != State::Closed && after == State::Closed {
            tracing::info!("MySQL breaker closed: MySQL answered the probe");
        }
        tripped
    }
}

/// A call let through; its outcome is recorded once, `Unknown` if it is dropped first (the
/// request timed out or the client went away), so a probe never holds its place for ever.
struct Permit<'a, C: Clock> {
    breaker: &'a MysqlBreaker<C>,
    probe: bool,
    ended: bool,
}

impl<C: Clock> Permit<'_, C> {
    fn end(mut self, outcome: Outcome) -> bool {
        self.ended = true;
        self.breaker.record(self.probe, outcome)
    }
}

impl<C: Clock> Drop for Permit<'_, C> {
    fn drop(&mut self) {
        if !self.ended {
            self.breaker.record(self.probe, Outcome::Unknown);
        }
    }
}

/// Whether MySQL answered, judging by `err`: a broken or refused connection, a pool with no
/// connection to give, or a garbled exchange say it did not; a query error (a constraint, a
/// decode) is MySQL answering.
fn answered(err: &anyhow::Error) -> bool {
    !err.chain()
        .filter_map(|e| e.downcast_ref::<sqlx::Error>())
        .any(|e| {
            matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            )
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct ManualClock {
        start: Instant,
        offset_ms: Arc<AtomicU64>,
    }

    impl ManualClock {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                offset_ms: Arc::new(AtomicU64::new(0)),
            }
        }

        fn advance(&self, millis: u64) {
            self.offset_ms.fetch_add(millis, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
        }
    }

    fn breaker(clock: &ManualClock) -> MysqlBreaker<ManualClock> {
        MysqlBreaker::with_clock(
            &BreakerSettings {
                mysql_timeout_ms: 50,
                failures_to_open: 2,
                failure_window_ms: 10_000,
                open_ms: 3_000,
            },
            clock.clone(),
        )
    }

    fn connection_lost() -> Failure {
        Failure::Mysql(anyhow::Error::new(sqlx::Error::PoolTimedOut).context("listing orders"))
    }

    fn unavailable(result: Result<(), Failure>) -> Unavailable {
        match result {
            Err(Failure::Unavailable(unavailable)) => unavailable,
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn lost_connections_and_timeouts_open_it_and_then_calls_are_refused_without_running() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        let lost = unavailable(breaker.call(async { Err(connection_lost()) }).await);
        assert_eq!(lost.retry_after_secs(), 1);
        assert!(lost.cause.is_some());
        let slow = unavailable(breaker.call(std::future::pending::<Result<(), _>>()).await);
        assert!(format!("{:#}", slow.cause.as_ref().unwrap()).contains("no answer within 50 ms"));
        assert_eq!(slow.retry_after_secs(), 3, "the trip tells the cool-down");
        assert_eq!((breaker.state(), breaker.trips()), (State::Open, 1));

        let ran = AtomicU64::new(0);
        let refused = unavailable(
            breaker
                .call(async {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await,
        );
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "an open breaker runs nothing"
        );
        assert!(refused.cause.is_none());
        assert_eq!(refused.retry_after_secs(), 3);
        assert_eq!(breaker.refused(), 1);
    }

    #[tokio::test]
    async fn a_query_error_is_mysql_answering_and_does_not_count_toward_opening() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        for _ in 0..3 {
            let result: Result<(), _> = breaker
                .call(async { Err(Failure::Mysql(sqlx::Error::RowNotFound.into())) })
                .await;
            assert!(matches!(result, Err(Failure::Mysql(_))));
            let result: Result<(), _> = breaker
                .call(async { Err(Failure::Redis(anyhow::anyhow!("Redis down"))) })
                .await;
            assert!(matches!(result, Err(Failure::Redis(_))));
        }
        assert_eq!((breaker.state(), breaker.trips()), (State::Closed, 0));
    }

    #[tokio::test]
    async fn after_the_cool_down_an_answered_probe_closes_it() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        for _ in 0..2 {
            let _ = breaker
                .call(async { Err::<(), _>(connection_lost()) })
                .await;
        }
        assert_eq!(breaker.state(), State::Open);
        clock.advance(3_000);
        let answer = breaker
            .call(async {
                assert_eq!(breaker.state(), State::HalfOpen, "the probe runs half-open");
                let refused = unavailable(breaker.call(async { Ok(()) }).await);
                assert!(refused.cause.is_none(), "one probe at a time");
                Ok(7)
            })
            .await;
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test]
    async fn a_probe_dropped_before_its_end_lets_the_next_call_probe() {
        let clock = ManualClock::new();
        let breaker = breaker(&clock);
        for _ in 0..2 {
            let _ = breaker
                .call(async { Err::<(), _>(connection_lost()) })
                .await;
        }
        clock.advance(3_000);
        {
            let probe = std::pin::pin!(breaker.call(std::future::pending::<Result<(), _>>()));
            // Polled once (the probe starts), then dropped: the request timed out above it.
            let _ = futures_poll_once(probe).await;
        }
        assert_eq!(breaker.state(), State::HalfOpen);
        assert!(breaker.call(async { Ok(()) }).await.is_ok());
        assert_eq!(breaker.state(), State::Closed);
    }

    /// Polls `future` once.
    async fn futures_poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
