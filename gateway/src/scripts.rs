//! The Lua scripts, compiled into the binary, run by `EVALSHA`; after a Redis restart or
//! failover (`NOSCRIPT`) a script is loaded again and the call retried once.

use fred::error::Error;
use fred::interfaces::LuaInterface;
use fred::prelude::{FromValue, Pool};
use fred::types::{MultipleKeys, MultipleValues};

/// One script: its source and the SHA1 Redis knows it by.
#[derive(Debug, Clone)]
pub struct Script {
    name: &'static str,
    source: &'static str,
    sha: String,
}

impl Script {
    fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            sha: fred::util::sha1_hash(source),
        }
    }

    /// The SHA1 of the source.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// The source text.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// `SCRIPT LOAD` on the primary.
    pub async fn load(&self, redis: &Pool) -> Result<(), Error> {
        let sha: String = redis.next().script_load(self.source).await?;
        debug_assert_eq!(sha, self.sha, "{} hashes differently in Redis", self.name);
        Ok(())
    }

    /// `EVALSHA`, reloading the script once if Redis lost it.
    pub async fn run<R, K, V>(&self, redis: &Pool, keys: K, args: V) -> Result<R, Error>
    where
        R: FromValue,
        K: Into<MultipleKeys> + Clone + Send,
        V: TryInto<MultipleValues> + Clone + Send,
        V::Error: Into<Error> + Send,
    {
        match redis.evalsha(&self.sha, keys.clone(), args.clone()).await {
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                tracing::info!(script = self.name, "script cache empty; loading again");
                self.load(redis).await?;
                redis.evalsha(&self.sha, keys, args).await
            }
            other => other,
        }
    }
}

/// Every script the gateway runs.
#[derive(Debug, Clone)]
pub struct Scripts {
    /// `lua/purchase.lua`: admit one purchase.
    pub purchase: Script,
    /// `lua/outbox_ack.lua`: acknowledge and delete relayed outbox entries.
    pub outbox_ack: Script,
    /// `lua/load_sale.lua`: put a sale into Redis unless it is there.
    pub load_sale: Script,
}

impl Scripts {
    /// The scripts of `lua/`.
    pub fn new() -> Self {
        Self {
            purchase: Script::new("purchase", include_str!("../../lua/purchase.lua")),
            outbox_ack: Script::new("outbox_ack", include_str!("../../lua/outbox_ack.lua")),
            load_sale: Script::new("load_sale", include_str!("../../lua/load_sale.lua")),
        }
    }

    /// Loads every script (at start).
    pub async fn load_all(&self, redis: &Pool) -> Result<(), Error> {
        self.purchase.load(redis).await?;
        self.outbox_ack.load(redis).await?;
        self.load_sale.load(redis).await
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
