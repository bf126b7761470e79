//! Guards against a failing or slow dependency: a circuit breaker in front of MySQL for the
//! routes that read it, and a bound on Redis calls in flight for purchases and claims.

mod guards;
mod in_flight;
mod machine;
mod mysql;
mod unavailable;

pub use guards::Guards;
pub use in_flight::{InFlight, InFlightPermit};
pub use machine::{Machine, Outcome, Pass, Policy, State};
pub use mysql::{Clock, MonotonicClock, MysqlBreaker};
pub use unavailable::Unavailable;
