//! The flashgate gateway: JWT-authenticated HTTP in front of atomic Redis admission, with an
//! outbox relay to Kafka.

pub mod admission;
pub mod app;
pub mod auth;
pub mod error;
pub mod http;
pub use flashgate_events::keys;
pub mod coupons;
pub mod metrics;
pub mod orders;
pub mod outbox_entry;
pub mod outbox_relay;
pub mod points;
pub mod policies;
pub mod readiness;
pub mod restock;
pub mod router;
pub mod routes;
pub mod sales;
pub mod scripts;
pub mod server;
pub mod soldout;
pub mod startup;
pub mod token;
