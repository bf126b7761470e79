//! The persister: MySQL is the system of record; this crate owns its schema and writes the
//! admitted orders and their ends, coupon events and point events from Kafka into it,
//! idempotently.
//!
//! A batch's way: [`consumer`] receives it; [`write`](mod@write) decodes it ([`decode`], [`batch`]),
//! persists it in one transaction ([`orders`], [`coupons`], [`points`], each with its rules),
//! settles the point caches in Redis ([`points::PointCaches`]), publishes dead letters,
//! compensation and lifecycle events ([`publish`]) and forgets the ended orders' records in
//! Redis ([`orders::OrderRecords`]); then [`consumer`] commits its offsets and counts it
//! ([`metrics`]).

pub mod batch;
pub mod consumer;
pub mod coupons;
pub mod db;
pub mod decode;
pub mod dlq;
pub mod failure;
pub mod http;
pub mod metrics;
pub mod orders;
pub mod parked;
pub mod points;
pub mod publish;
pub mod startup;
pub mod trace;
pub mod write;
