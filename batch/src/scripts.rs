//! The Lua scripts of the batch jobs, compiled into the binary and run by `EVALSHA`; when Redis
//! lost its script cache (a restart, a failover) a script is loaded again and retried once.

use fred::error::Error;
use fred::interfaces::LuaInterface;
use fred::prelude::{FromValue, Pool};
use fred::types::{MultipleKeys, MultipleValues};

/// One script: its source and the SHA1 Redis knows it by.
#[derive(Debug, Clone)]
pub struct Script {
    source: &'static str,
    sha: String,
}

impl Script {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: fred::util::sha1_hash(source),
        }
    }

    /// `EVALSHA`, loading the script and retrying once on `NOSCRIPT`.
    pub async fn run<R, K, V>(&self, redis: &Pool, keys: K, args: V) -> Result<R, Error>
    where
        R: FromValue,
        K: Into<MultipleKeys> + Clone + Send,
        V: TryInto<MultipleValues> + Clone + Send,
        V::Error: Into<Error> + Send,
    {
        match redis.evalsha(&self.sha, keys.clone(), args.clone()).await {
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                let _: String = redis.next().script_load(self.source).await?;
                redis.evalsha(&self.sha, keys, args).await
            }
            other => other,
        }
    }
}

/// The scripts the reconciliation runs.
#[derive(Debug, Clone)]
pub struct Scripts {
    /// `lua/points_cache_read.lua`: read many caches of one bucket.
    pub cache_read: Script,
    /// `lua/points_cache_fix.lua`: repair one cache if its version did not move.
    pub cache_fix: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            cache_read: Script::new(include_str!("../../lua/points_cache_read.lua")),
            cache_fix: Script::new(include_str!("../../lua/points_cache_fix.lua")),
        }
    }
}
