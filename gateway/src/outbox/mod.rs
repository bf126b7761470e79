//! The outbox: the relay that moves events from Redis streams to Kafka, the codec of their
//! entries, and the one registry of which outboxes are active.

pub mod delivery;
mod discount_entry;
pub mod entry;
mod fields;
pub mod pacing;
pub mod registry;
pub mod relay;
pub mod stream;
pub mod watch;
