//! Smoke tests: the client settings of this crate reach the local stack's real servers
//! (Redis through Sentinel, the Kafka-protocol broker). Run `scripts/stack.sh up` first;
//! `scripts/test.sh` does.

mod kafka;
mod redis;
