//! HTTP: the server, the route table, reading requests and writing answers and errors.

pub mod error;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
