//! The route handlers, one file per concern, each thin: it parses its request, calls its
//! domain and answers the outcome. Who may call which is in the route table
//! (`http/router.rs`); failures are answered by `http/error.rs`.

pub mod admin_orders;
pub mod admin_policies;
pub mod admin_sales;
pub mod console;
pub mod coupons;
pub mod orders;
pub mod payments;
pub mod points;
pub mod purchase;
pub mod queue;
pub mod revocation;
