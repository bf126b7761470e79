//! What sales and coupon policies share in Redis: their state is derived from MySQL by a load
//! script that never overwrites what Redis holds, their outbox is registered with the relay
//! when the state is loaded, and their live counters and status are read and set the same way.

use anyhow::Context;
use fred::prelude::{HashesInterface, KeysInterface, Pool, Value};

use crate::outbox::registry;
use crate::scripts::Script;

/// Runs a load script (which never overwrites what Redis holds) on `state`, and registers
/// `outbox` with the relay. Returns whether the script loaded anything.
pub async fn load_and_register(
    redis: &Pool,
    script: &Script,
    state: Vec<String>,
    args: Vec<Value>,
    prefix: &str,
    outbox: &str,
) -> anyhow::Result<bool> {
    let loaded: i64 = script
        .run(redis, state, args)
        .await
        .context("loading state into Redis")?;
    registry::register(redis, prefix, outbox)
        .await
        .context("registering the outbox with the relay")?;
    Ok(loaded == 1)
}

/// Live counters of an owner: the string `left` (units or coupons left) and the `field`
/// counter of its state hash, `(left, field)`, read in one step (`lua/read_counters.lua`) so
/// they add up even mid-rush; `None` where Redis does not hold them.
pub async fn counters(
    redis: &Pool,
    read_counters: &Script,
    left: &str,
    state: &str,
    field: &str,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    read_counters
        .run(
            redis,
            vec![left.to_owned(), state.to_owned()],
            vec![field.to_owned()],
        )
        .await
        .with_context(|| format!("reading what is left and {field}"))
}

/// Sets `status` in the state hash of a sale or policy, only when Redis holds it: a missing
/// one is restored from MySQL with the new status.
pub async fn set_status_in_redis(redis: &Pool, hash: &str, status: &str) -> anyhow::Result<()> {
    let present: bool = redis.exists(hash).await.context("checking Redis state")?;
    if present {
        let _: i64 = redis
            .hset(hash, ("status", status))
            .await
            .context("updating status in Redis")?;
    }
    Ok(())
}
