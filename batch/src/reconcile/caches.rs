//! The Redis side of the reconciliation: reading many users' point caches (grouped by bucket,
//! one script call per bucket and chunk) and the conditional repair of one.

use std::collections::HashMap;

use anyhow::Context;
use flashgate_events::keys::{PointsKeys, by_points_bucket};
use fred::prelude::Pool;
use fred::types::scripts::Script;

use super::compare::CacheEntry;

/// Most keys passed to one read script call; bounds the reply and the time Redis is busy.
const KEYS_PER_CALL: usize = 500;

/// What the repair script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheRepair {
    /// The entry was set or deleted (or there was none to repair).
    Done,
    /// Its version moved since the check: an update is in flight, the entry was left alone.
    Moved,
}

/// The point caches of a bucket-tagged key prefix.
#[derive(Debug, Clone)]
pub struct CacheAuditor {
    /// The Redis the gateway reads balances from.
    redis: Pool,
    /// `redis.key_prefix`, so the keys are the gateway's.
    prefix: String,
    /// `lua/points_cache_read.lua`: read many caches of one bucket.
    read: Script,
    /// `lua/points_cache_fix.lua`: repair one cache if its version did not move.
    fix: Script,
}

impl CacheAuditor {
    /// CacheAuditor under `prefix` (`redis.key_prefix`).
    pub fn new(redis: Pool, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            read: Script::from_lua(include_str!("../../../lua/points_cache_read.lua")),
            fix: Script::from_lua(include_str!("../../../lua/points_cache_fix.lua")),
        }
    }

    /// The cache entries of `users` that exist, by user id.
    pub async fn read<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<HashMap<String, CacheEntry>> {
        let mut found = HashMap::new();
        for (bucket, users) in by_points_bucket(users, |user| *user) {
            let keys = PointsKeys::new(&self.prefix, bucket);
            for chunk in users.chunks(KEYS_PER_CALL) {
                let names: Vec<String> = chunk.iter().map(|u| keys.balance(u)).collect();
                // EVALSHA; on NOSCRIPT (a restarted or failed-over Redis) load and retry once.
                let reply: Vec<String> = self
                    .read
                    .evalsha_with_reload(self.redis.next(), names, ())
                    .await
                    .context("reading point caches from Redis")?;
                anyhow::ensure!(
                    reply.len() == 3 * chunk.len(),
                    "points_cache_read.lua answered {} values for {} keys",
                    reply.len(),
                    chunk.len()
                );
                for (user, fields) in chunk.iter().zip(reply.chunks(3)) {
                    if let Some(entry) = parse_entry(fields) {
                        found.insert((*user).to_owned(), entry);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Sets `user`'s cache to `balance` at `version` (minus what is pending, or deletes it when
    /// nothing is), only if it still reflects `expected_version`.
    pub async fn repair(
        &self,
        user: &str,
        expected_version: u64,
        balance: i64,
        version: u64,
    ) -> anyhow::Result<CacheRepair> {
        let key = PointsKeys::for_user(&self.prefix, user).balance(user);
        let reply: i64 = self
            .fix
            .evalsha_with_reload(
                self.redis.next(),
                key,
                vec![
                    expected_version.to_string(),
                    balance.to_string(),
                    version.to_string(),
                ],
            )
            .await
            .context("repairing a point cache in Redis")?;
        Ok(if reply < 0 {
            CacheRepair::Moved
        } else {
            CacheRepair::Done
        })
    }
}

/// `[balance, version, pending]` as the read script answers it; `None` for a missing entry.
/// An unparsable version matches no row, so such a user is reported unsettled, never fixed.
fn parse_entry(fields: &[String]) -> Option<CacheEntry> {
    if fields[1].is_empty() {
        return None;
    }
    Some(CacheEntry {
        balance: fields[0].parse().unwrap_or(0),
        version: fields[1].parse().unwrap_or(u64::MAX),
        pending: fields[2].parse().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(values: [&str; 3]) -> Vec<String> {
        values.map(str::to_owned).to_vec()
    }

    #[test]
    fn an_entry_without_a_version_is_no_entry() {
        assert_eq!(parse_entry(&fields(["", "", ""])), None);
        assert_eq!(
            parse_entry(&fields(["40", "7", "10"])),
            Some(CacheEntry {
                balance: 40,
                version: 7,
                pending: 10
            })
        );
    }
}
