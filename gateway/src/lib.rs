//! The flashgate gateway: JWT-authenticated HTTP in front of atomic Redis admission, with an
//! outbox relay to Kafka.
//!
//! Where things are: `sales/`, `coupons/`, `points/` and `orders/` hold each domain's rules,
//! its MySQL part and its Redis part; `outbox/` the relay to Kafka and its registry; `http/`
//! the server, the route table, errors, authentication and request helpers; `routes/` the
//! thin handlers (parse, call the domain, answer).

pub mod app;
pub mod breaker;
pub mod console;
pub mod coupons;
pub mod failure;
pub mod http;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod orders;
pub mod outbox;
pub mod owned_state;
pub mod points;
pub mod queue;
pub mod restore;
pub mod revocation;
pub mod routes;
pub mod sales;
pub mod scripts;
pub mod startup;

pub use flashgate_events::keys;
pub use http::{auth, token};
