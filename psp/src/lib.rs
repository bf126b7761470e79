//! `flashgate-psp`: a virtual payment provider for the demo, the tests and the benchmarks, in
//! the spirit of stripe-mock. Charges are idempotent on their `Idempotency-Key`, their outcome
//! is decided by test tokens ([`token`]), refunds are whole and happen at most once per charge.
//! Everything is kept in memory ([`Provider`]), and lost when the process stops.
//!
//! A request's way: [`http::server`] accepts it, [`http::router`] finds its route and waits
//! the configured latency, a handler in [`routes`] parses it and asks the [`book`] (charges)
//! or [`refunds`], and maps the outcome to an answer ([`http::error`] for the refusals).

pub mod app;
pub mod book;
pub mod charge;
pub mod http;
pub mod metrics;
pub mod provider;
pub mod refunds;
pub mod routes;
pub mod startup;
pub mod token;

pub use book::{Counts, MAX_CHARGES};
pub use charge::{Charge, ChargeStatus, Refund};
pub use flashgate_config::PspSettings;
pub use http::server::serve;
pub use provider::Provider;
