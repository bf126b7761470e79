//! The live sale console: a page for managers (`GET /console`) and the bounded stream of
//! snapshots it draws from (`GET /v1/admin/events`, Server-Sent Events).

pub mod page;
pub mod snapshot;
pub mod stream;
