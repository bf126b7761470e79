//! The HTTP side: the server, the route table, the error contract, authentication, tokens,
//! reading requests and making responses, and the health and readiness endpoints.

pub mod auth;
pub mod docs_page;
pub mod error;
pub mod health;
pub mod openapi;
pub mod readiness;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod token;
pub mod trace;
