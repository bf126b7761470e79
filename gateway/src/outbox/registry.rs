//! The one registry of the outboxes the relay reads: the Redis set `<prefix>:outboxes:active`.
//!
//! Loading a sale or a coupon policy registers its outbox, and so does a restore for the point
//! buckets'; the relay retires an outbox once it is empty and its owner over, and its sweep
//! registers again a non-empty outbox it finds outside the set. Nothing else changes the set.

use fred::error::Error;
use fred::prelude::{Pool, SetsInterface};
use fred::types::MultipleValues;

use crate::keys;

/// Adds `outboxes` (stream keys) to the registry; returns how many were not in it yet.
pub async fn register<V>(redis: &Pool, prefix: &str, outboxes: V) -> Result<i64, Error>
where
    V: TryInto<MultipleValues> + Send,
    V::Error: Into<Error> + Send,
{
    redis.sadd(keys::active_outboxes(prefix), outboxes).await
}

/// Removes `outbox` from the registry: the relay stops reading it.
pub async fn retire(redis: &Pool, prefix: &str, outbox: &str) -> Result<i64, Error> {
    redis.srem(keys::active_outboxes(prefix), outbox).await
}

/// The key of every registered outbox.
pub async fn members(redis: &Pool, prefix: &str) -> Result<Vec<String>, Error> {
    redis.smembers(keys::active_outboxes(prefix)).await
}
