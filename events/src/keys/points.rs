//! The keys of point balances, spread over a fixed number of buckets (hash tag `{p:<bucket>}`),
//! and the grouping of users by bucket.

use std::collections::BTreeMap;

use super::idempotency::idempotency_key;

/// How many buckets point balances are spread over. Each bucket has its own hash tag and its
/// own outbox stream, so the relay reads a fixed, small number of point outboxes.
pub const POINT_BUCKETS: u32 = 16;

/// The bucket of `user_id`'s points (FNV-1a of the id; stable across processes and releases).
pub fn points_bucket(user_id: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(POINT_BUCKETS)) as u32
}

/// `items` grouped by the point bucket of their user (`user_of`), buckets in ascending order,
/// each group in the items' order: a script gets the keys of one bucket (one hash tag, one
/// Redis Cluster slot) per call.
pub fn by_points_bucket<T>(
    items: impl IntoIterator<Item = T>,
    user_of: impl Fn(&T) -> &str,
) -> BTreeMap<u32, Vec<T>> {
    let mut by_bucket: BTreeMap<u32, Vec<T>> = BTreeMap::new();
    for item in items {
        let bucket = points_bucket(user_of(&item));
        by_bucket.entry(bucket).or_default().push(item);
    }
    by_bucket
}

/// The keys of one bucket of point balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsKeys {
    /// Stream: point events (uses, refunds) waiting for the relay.
    pub outbox: String,
    base: String,
}

impl PointsKeys {
    /// Keys of bucket `bucket` under `prefix`.
    pub fn new(prefix: &str, bucket: u32) -> Self {
        let base = format!("{prefix}:{{p:{bucket}}}");
        Self {
            outbox: format!("{base}:outbox"),
            base,
        }
    }

    /// Keys of the bucket `user_id` belongs to.
    pub fn for_user(prefix: &str, user_id: &str) -> Self {
        Self::new(prefix, points_bucket(user_id))
    }

    /// Hash caching one user's points: `balance` (spendable now: the MySQL balance minus
    /// `pending`), `version` (the `point_balances.version` it reflects), `pending` (points
    /// spent in Redis whose event has not been persisted yet, less refunds likewise) with one
    /// `tx:<txid>` field per such change, and `floor` (see `lua/points_settle.lua`).
    pub fn balance(&self, user_id: &str) -> String {
        format!("{}:pts:{user_id}", self.base)
    }

    /// Hash of one use of points (user, amount, order, status), kept for its cancellation.
    pub fn use_record(&self, txid: &str) -> String {
        format!("{}:puse:{txid}", self.base)
    }

    /// The stored answer for `user`'s idempotency key on a points action.
    pub fn idempotency(&self, user: &str, key: &str) -> String {
        idempotency_key(&self.base, user, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_point_keys_share_the_hash_tag_of_its_bucket() {
        let bucket = points_bucket("alice");
        assert!(bucket < POINT_BUCKETS);
        assert_eq!(bucket, points_bucket("alice"), "stable");
        let keys = PointsKeys::for_user("fg", "alice");
        let tag = format!("fg:{{p:{bucket}}}:");
        for key in [
            &keys.outbox,
            &keys.balance("alice"),
            &keys.use_record("use-1"),
            &keys.idempotency("alice", "k"),
        ] {
            assert!(key.starts_with(&tag), "{key}");
        }
    }

    #[test]
    fn users_grouped_by_bucket_keep_their_order_within_it() {
        let users: Vec<String> = (0..40).map(|n| format!("user-{n}")).collect();
        let groups = by_points_bucket(&users, |user| user.as_str());
        assert_eq!(groups.values().map(Vec::len).sum::<usize>(), users.len());
        for (bucket, group) in &groups {
            assert!(group.iter().all(|user| points_bucket(user) == *bucket));
            let order: Vec<usize> = group
                .iter()
                .map(|user| users.iter().position(|u| u == *user).expect("a user"))
                .collect();
            assert!(order.is_sorted(), "{order:?}");
        }
    }

    #[test]
    fn users_spread_over_all_point_buckets() {
        let mut seen = [0u32; POINT_BUCKETS as usize];
        for n in 0..10_000 {
            seen[points_bucket(&format!("user-{n}")) as usize] += 1;
        }
        // 625 per bucket if perfectly even; every bucket well used.
        assert!(seen.iter().all(|&count| count > 400), "{seen:?}");
    }
}
