//! The users' point caches in Redis, brought in step by version after a commit
//! (`lua/points_settle.lua`). A cache left with nothing pending gets its TTL from this write
//! (`points.cache_ttl_secs`): the gateway rebuilds an expired one from MySQL on the next read.

use anyhow::Context;
use flashgate_events::keys::{PointsKeys, by_points_bucket};
use fred::prelude::Pool;
use fred::types::scripts::Script;

/// How long a `floor` left on a dropped cache is kept (a rebuild in flight takes far less).
const FLOOR_TTL_MS: u64 = 30_000;

/// How long a cache with nothing pending is kept when the settings do not say
/// (`points.cache_ttl_secs`'s default).
const DEFAULT_CACHE_TTL_MS: u64 = 86_400_000;

/// Most users settled by one script call.
const USERS_PER_CALL: usize = 200;

/// The cache work one user needs after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// Whose cache.
    pub user_id: String,
    /// The balance row's version before the commit.
    pub from: u64,
    /// Its version after (the same when nothing moved the balance).
    pub to: u64,
    /// The balance after, which the cache takes if it is still at `from`.
    pub balance: i64,
    /// Redis-made changes settled: written, found written, or refused.
    pub txids: Vec<String>,
}

/// Brings the Redis caches in step with committed changes.
#[derive(Debug, Clone)]
pub struct PointCaches {
    /// The Redis the gateway reads balances from.
    redis: Pool,
    /// `redis.key_prefix`, so the keys are the gateway's.
    prefix: String,
    /// `lua/points_settle.lua`, run by its SHA (reloaded after a Redis restart).
    script: Script,
    /// How long a cache with nothing pending is kept after a settle, in milliseconds.
    cache_ttl_ms: u64,
}

impl PointCaches {
    /// The caches under `prefix` (`redis.key_prefix`).
    pub fn new(redis: Pool, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            script: Script::from_lua(include_str!("../../../lua/points_settle.lua")),
            cache_ttl_ms: DEFAULT_CACHE_TTL_MS,
        }
    }

    /// The same, keeping a settled cache with nothing pending `secs` seconds
    /// (`points.cache_ttl_secs`).
    #[must_use]
    pub fn with_cache_ttl(self, secs: u64) -> Self {
        Self {
            cache_ttl_ms: secs.saturating_mul(1000),
            ..self
        }
    }

    /// Runs the settle script for `work`, one call per bucket and chunk, keeping each user's
    /// entries in order. Safe to repeat: a batch retried after a failure here settles again.
    pub async fn settle(&self, work: &[Settle]) -> anyhow::Result<()> {
        for (bucket, work) in by_points_bucket(work, |settle| &settle.user_id) {
            let keys = PointsKeys::new(&self.prefix, bucket);
            for chunk in work.chunks(USERS_PER_CALL) {
                let names: Vec<String> = chunk.iter().map(|s| keys.balance(&s.user_id)).collect();
                let mut args: Vec<String> =
                    vec![FLOOR_TTL_MS.to_string(), self.cache_ttl_ms.to_string()];
                for settle in chunk {
                    args.push(settle.from.to_string());
                    args.push(settle.to.to_string());
                    args.push(settle.balance.to_string());
                    args.push(settle.txids.len().to_string());
                    args.extend(settle.txids.iter().cloned());
                }
                let _: Vec<String> = self
                    .script
                    .evalsha_with_reload(self.redis.next(), names, args)
                    .await
                    .context("settling point caches in Redis")?;
            }
        }
        Ok(())
    }
}
