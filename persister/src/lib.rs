//! The persister: MySQL is the system of record; this crate owns its schema and writes the
//! admitted orders, coupon events and point events from Kafka into it, idempotently.

mod announce;
pub mod batch;
pub mod consumer;
pub mod coupons;
pub mod db;
pub mod decode;
pub mod failure;
pub mod http;
pub mod metrics;
pub mod parked;
pub mod points;
pub mod store;
