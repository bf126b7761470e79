//! Removing from Redis the coupon policies whose life is over: once the last coupon has
//! expired (by Redis's clock) plus a grace period, and the outbox is empty, the policy's keys
//! go (`lua/policy_cleanup.lua`, one step on the policy's slot) and it leaves the list of live
//! policies. Its coupons' hashes have expired by themselves by then (each carries a TTL from
//! its claim); MySQL keeps the record, and restore loads only policies whose coupons can still
//! change, so it never brings a removed one back.
//!
//! The outbox's entry in the relay's registry is left to the relay: it retires an outbox whose
//! owner is gone (and deletes the empty stream a relay may have made again just before), so no
//! stream is left behind by a relay that read it a moment before the cleanup.

use std::collections::BTreeSet;

use anyhow::Context;
use fred::prelude::{KeysInterface, Pool, SetsInterface};

use crate::app::App;
use crate::keys::{Outbox, PolicyKeys, live_policies};
use crate::outbox::registry;
use crate::scripts::{Script, int, unexpected_reply};

/// What the cleanup script decided for one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Its keys were removed now.
    Cleaned,
    /// Redis did not hold it (removed before, or lost); leftovers were removed.
    Gone,
    /// Not over by the grace yet.
    Open,
    /// Over, but its outbox still holds events for Kafka.
    Busy,
}

/// Removes the keys of every policy that has been over for `grace_ms` (by Redis's clock) and
/// whose outbox is empty. Returns how many were removed by this call. Safe to run from several
/// gateways at once: each policy is removed once, the others find it gone.
pub async fn sweep_policies(app: &App, grace_ms: u64) -> anyhow::Result<usize> {
    let prefix = app.prefix();
    let mut cleaned = 0;
    for policy_id in candidates(&app.redis, prefix).await? {
        let keys = PolicyKeys::new(prefix, policy_id);
        let outcome = clean_up(&app.redis, &app.scripts.policy_cleanup, &keys, grace_ms)
            .await
            .with_context(|| format!("cleaning up coupon policy {policy_id}"))?;
        match outcome {
            Cleanup::Cleaned => {
                cleaned += 1;
                tracing::info!(policy_id, "coupon policy over; its keys were removed");
                forget(&app.redis, prefix, policy_id, &keys).await?;
            }
            Cleanup::Gone => forget(&app.redis, prefix, policy_id, &keys).await?,
            Cleanup::Open | Cleanup::Busy => {}
        }
    }
    Ok(cleaned)
}

/// The policies that may still have keys in Redis: the live list, and those whose outbox the
/// relay still watches (a policy loaded before the list existed is among them).
async fn candidates(redis: &Pool, prefix: &str) -> anyhow::Result<BTreeSet<u64>> {
    let listed: Vec<u64> = redis
        .smembers(live_policies(prefix))
        .await
        .context("reading the live coupon policies")?;
    let watched = registry::members(redis, prefix)
        .await
        .context("reading the relay's outboxes")?;
    let mut ids: BTreeSet<u64> = listed.into_iter().collect();
    ids.extend(watched.iter().filter_map(|key| match Outbox::of_key(key) {
        Some(Outbox::Policy(id)) => Some(id),
        _ => None,
    }));
    Ok(ids)
}

/// Runs `lua/policy_cleanup.lua` once for the policy of `keys`.
pub async fn clean_up(
    redis: &Pool,
    script: &Script,
    keys: &PolicyKeys,
    grace_ms: u64,
) -> Result<Cleanup, fred::error::Error> {
    let names = vec![
        keys.policy.clone(),
        keys.remaining.clone(),
        keys.holders.clone(),
        keys.outbox.clone(),
    ];
    let reply: String = script.run(redis, names, vec![int(grace_ms)]).await?;
    parse_cleanup(&reply)
}

fn parse_cleanup(reply: &str) -> Result<Cleanup, fred::error::Error> {
    Ok(match reply {
        "cleaned" => Cleanup::Cleaned,
        "gone" => Cleanup::Gone,
        "open" => Cleanup::Open,
        "busy" => Cleanup::Busy,
        other => return Err(unexpected_reply("policy_cleanup", other)),
    })
}

/// Drops the policy from the live list. A restore may load it again at this very moment
/// (Redis had lost it): if its hash is back once the id is dropped, the id goes back too, so a
/// policy in Redis is never left off the list.
async fn forget(
    redis: &Pool,
    prefix: &str,
    policy_id: u64,
    keys: &PolicyKeys,
) -> anyhow::Result<()> {
    let list = live_policies(prefix);
    let _: i64 = redis
        .srem(&list, policy_id)
        .await
        .context("dropping the policy from the live list")?;
    let back: bool = redis
        .exists(&keys.policy)
        .await
        .context("checking the policy is not back")?;
    if back {
        let _: i64 = redis
            .sadd(&list, policy_id)
            .await
            .context("listing the restored policy again")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_replies_map_to_outcomes() {
        assert_eq!(parse_cleanup("cleaned").unwrap(), Cleanup::Cleaned);
        assert_eq!(parse_cleanup("gone").unwrap(), Cleanup::Gone);
        assert_eq!(parse_cleanup("open").unwrap(), Cleanup::Open);
        assert_eq!(parse_cleanup("busy").unwrap(), Cleanup::Busy);
        assert!(parse_cleanup("bogus").is_err());
    }
}
