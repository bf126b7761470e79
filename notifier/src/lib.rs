//! The notifier: tells shoppers and operators what happened to orders, payments, coupons and
//! points, once per event, channel and target.
//!
//! An event's way: [`intake`] consumes the lifecycle, compensation and coupon topics
//! ([`event`]) and records one row per delivery its routes ask for ([`store`]) before it
//! commits; [`dispatch`] sends each off the consumer's path through its endpoint's bounded
//! queue and circuit breaker ([`breaker`]) by one of the [`channels`] (email from
//! [`templates`]), retries with backoff and dead-letters the hopeless ([`deadletter`]);
//! [`metrics`] shows it (served by the persister's operational endpoints), [`startup`] wires
//! it.

pub mod breaker;
pub mod channels;
pub mod deadletter;
pub mod dispatch;
pub mod event;
pub mod intake;
pub mod metrics;
pub mod startup;
pub mod store;
pub mod templates;
pub mod trace;
