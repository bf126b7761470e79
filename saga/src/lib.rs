//! The payment saga: charges a payment provider for the orders shoppers pay, once, and ends
//! each order paid, cancelled (declined), expired (unanswered) or refunded.
//!
//! A payment's way: [`intake`] consumes the requests the gateways relay ([`decode`]) and
//! stores them in `payments` ([`requests`]); [`worker`] claims due payments under a lease
//! ([`store`]) and takes each through its steps (`work.rs`; [`steps`] is the decision table,
//! with [`backoff`]), calling the provider ([`provider`], whose answering [`health`] tracks), the order's record in Redis
//! ([`orders`]) and announcing the outcome ([`publish`]); [`metrics`] shows it (served by the
//! persister's operational endpoints), [`startup`] wires it.

pub mod announce;
pub mod backoff;
pub mod decode;
pub mod handoff;
pub mod health;
pub mod intake;
pub mod metrics;
pub mod orders;
pub mod payment;
pub mod provider;
pub mod publish;
pub mod requests;
pub mod startup;
pub mod steps;
pub mod store;
pub mod trace;
mod work;
pub mod worker;
