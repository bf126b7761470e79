//! The Redis side of revocation: recording one (through `lua/revoke_token.lua`, which also
//! announces it) and reading every live one back (at start and after each reconnect of the
//! subscriber).
//!
//! Two sorted sets, one per kind, rather than a key per `jti`: a reload is one range read per
//! kind (paged) instead of a `SCAN` of the whole keyspace, and each set expires by itself
//! when its longest-lived entry does (the script prunes the rest on every write).

use fred::prelude::{Pool, SortedSetsInterface, Value};

use crate::revocation::Revocations;
use crate::scripts::Script;

/// Entries read per page of a reload.
const RELOAD_PAGE: i64 = 5_000;

/// The keys and the channel of one deployment (`prefix`).
#[derive(Debug, Clone)]
pub struct RevocationKeys {
    /// Sorted set of revoked tokens: member `jti`, score: when to forget it.
    pub tokens: String,
    /// Sorted set of users whose tokens are revoked: member user id, score: revoked at.
    pub users: String,
    /// Pub/sub channel on which every revocation is announced.
    pub channel: String,
}

impl RevocationKeys {
    /// The names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            tokens: format!("{prefix}:revoked:tokens"),
            users: format!("{prefix}:revoked:users"),
            channel: format!("{prefix}:revocations"),
        }
    }
}

/// Records the revocation of token `jti` until `forget_at` and announces it; returns
/// `forget_at` as stored.
pub async fn revoke_token(
    redis: &Pool,
    script: &Script,
    keys: &RevocationKeys,
    jti: &str,
    forget_at: u64,
) -> Result<u64, fred::error::Error> {
    script
        .run(
            redis,
            vec![keys.tokens.as_str()],
            vec!["t", jti, &forget_at.to_string(), &keys.channel],
        )
        .await
}

/// Records the revocation of every token of `user_id` issued up to now (Redis's clock), kept
/// `keep_seconds`, and announces it; returns the revocation time.
pub async fn revoke_user(
    redis: &Pool,
    script: &Script,
    keys: &RevocationKeys,
    user_id: &str,
    keep_seconds: u64,
) -> Result<u64, fred::error::Error> {
    script
        .run(
            redis,
            vec![keys.users.as_str()],
            vec!["u", user_id, &keep_seconds.to_string(), &keys.channel],
        )
        .await
}

/// Reads every live revocation into the denylist; returns how many entries were read.
pub async fn reload(
    redis: &Pool,
    revocations: &Revocations,
    now: u64,
) -> Result<usize, fred::error::Error> {
    let keys = &revocations.keys;
    let mut read = 0;
    read += scan(redis, &keys.tokens, now, |jti, forget_at| {
        revocations.denylist.revoke_token(jti, forget_at);
    })
    .await?;
    let keep = revocations.user_keep_seconds();
    read += scan(
        redis,
        &keys.users,
        now.saturating_sub(keep),
        |user, revoked_at| {
            revocations
                .denylist
                .revoke_user(user, revoked_at, revoked_at + keep);
        },
    )
    .await?;
    Ok(read)
}

/// Calls `apply` on every member of `key` scored `min` or more, page by page. A page starts
/// at the last score seen, skipping the members of that score already read, so each page
/// costs O(log n + page) whatever the set's size.
async fn scan(
    redis: &Pool,
    key: &str,
    min: u64,
    mut apply: impl FnMut(&str, u64),
) -> Result<usize, fred::error::Error> {
    let (mut from, mut skip, mut read) = (min, 0, 0);
    loop {
        let page: Vec<Value> = redis
            .zrangebyscore(key, from as i64, "+inf", true, Some((skip, RELOAD_PAGE)))
            .await?;
        let entries = pairs(page);
        for (member, score) in &entries {
            apply(member, *score);
        }
        read += entries.len();
        let Some(&(_, last)) = entries.last() else {
            return Ok(read);
        };
        if (entries.len() as i64) < RELOAD_PAGE {
            return Ok(read);
        }
        let at_last = entries.iter().filter(|(_, score)| *score == last).count() as i64;
        if last == from {
            skip += at_last;
        } else {
            (from, skip) = (last, at_last);
        }
    }
}

/// `(member, score)` pairs of a `WITHSCORES` reply, flat (RESP2) or nested (RESP3).
fn pairs(reply: Vec<Value>) -> Vec<(String, u64)> {
    let flat: Vec<Value> = reply
        .into_iter()
        .flat_map(|value| match value {
            Value::Array(inner) => inner,
            other => vec![other],
        })
        .collect();
    flat.chunks_exact(2)
        .filter_map(|pair| {
            let member = pair[0].as_string()?;
            let score = pair[1].as_f64()?;
            Some((member, score.max(0.0) as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_pair_with_members_in_both_protocols() {
        let flat = vec![
            Value::from("a"),
            Value::from("17"),
            Value::from("b"),
            Value::from(18.0),
        ];
        assert_eq!(pairs(flat), vec![("a".into(), 17), ("b".into(), 18)]);
        let nested = vec![Value::Array(vec![Value::from("a"), Value::from(17.0)])];
        assert_eq!(pairs(nested), vec![("a".into(), 17)]);
    }
}
