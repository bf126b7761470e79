//! The persister: MySQL is the system of record; this crate owns its schema and writes the
//! admitted orders from Kafka into it, idempotently.

pub mod consumer;
pub mod coupons;
pub mod db;
pub mod decode;
pub mod http;
pub mod metrics;
pub mod points;
pub mod store;
