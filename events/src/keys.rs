//! Redis key names, shared by the gateway, the persister, the batch jobs and the load test.
//!
//! Every key one script touches shares one hash tag (`{s:<sale>}` for a sale, `{p:<bucket>}` for
//! a bucket of point balances), so the script stays on one Redis Cluster slot; scripts get keys
//! only through `KEYS`.

use std::collections::BTreeMap;

/// The keys of one sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleKeys {
    /// Hash: status, window, price, per-user limit, admitted/orders counters.
    pub sale: String,
    /// String: units left.
    pub stock: String,
    /// Hash: user id → units admitted.
    pub buyers: String,
    /// Stream: admitted orders waiting for the relay.
    pub outbox: String,
    /// Hash: order id → `user\nquantity` of every admitted order.
    pub orders: String,
    /// Hash: the coupon and point discounts reserved on the sale's orders, capped at each
    /// order's amount (`lua/order_discount.lua`); kept and removed like `orders`.
    pub discounts: String,
    prefix: String,
}

impl SaleKeys {
    /// Keys of `sale_id` under `prefix` (`fg` by default).
    pub fn new(prefix: &str, sale_id: u64) -> Self {
        let base = format!("{prefix}:{{s:{sale_id}}}");
        Self {
            sale: format!("{base}:sale"),
            stock: format!("{base}:stock"),
            buyers: format!("{base}:buyers"),
            outbox: format!("{base}:outbox"),
            orders: format!("{base}:orders"),
            discounts: format!("{base}:discounts"),
            prefix: base,
        }
    }

    /// The stored answer for `user`'s idempotency key on this sale.
    pub fn idempotency(&self, user: &str, key: &str) -> String {
        idempotency_key(&self.prefix, user, key)
    }
}

/// `<base>:idem:<user>:<key>` with `%` and `:` of the user written `%25` and `%3A`.
///
/// Both the user id and the client's key may contain `:`, so joining them as they are lets
/// two users share a stored answer (`a` + `b:c` and `a:b` + `c`). Escaped, the user part
/// holds no `:` and ends at the first one: every (user, key) pair has its own name. A user id
/// without `%` or `:` (nearly all) keeps the name it had before the escaping.
fn idempotency_key(base: &str, user: &str, key: &str) -> String {
    let mut name = String::with_capacity(base.len() + user.len() + key.len() + 8);
    name.push_str(base);
    name.push_str(":idem:");
    for c in user.chars() {
        match c {
            '%' => name.push_str("%25"),
            ':' => name.push_str("%3A"),
            c => name.push(c),
        }
    }
    name.push(':');
    name.push_str(key);
    name
}

/// Set of the outbox stream keys the relay reads (sales, coupon policies, point buckets).
pub fn active_outboxes(prefix: &str) -> String {
    format!("{prefix}:outboxes:active")
}

/// Pub/sub channel announcing that a sale has stock again (clears sold-out caches).
pub fn restock_channel(prefix: &str) -> String {
    format!("{prefix}:restock")
}

/// The keys of one coupon policy (hash tag `{c:<id>}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyKeys {
    /// Hash: status, claim window, limit, expiry rule, discount, `issued` counter.
    pub policy: String,
    /// String: coupons left to claim.
    pub remaining: String,
    /// Hash: user id → coupons claimed.
    pub holders: String,
    /// Stream: coupon events waiting for the relay.
    pub outbox: String,
    base: String,
}

impl PolicyKeys {
    /// Keys of `policy_id` under `prefix`.
    pub fn new(prefix: &str, policy_id: u64) -> Self {
        let base = format!("{prefix}:{{c:{policy_id}}}");
        Self {
            policy: format!("{base}:policy"),
            remaining: format!("{base}:remaining"),
            holders: format!("{base}:holders"),
            outbox: format!("{base}:outbox"),
            base,
        }
    }

    /// Hash of one coupon of this policy: user, status, expiry, state sequence, order.
    pub fn coupon(&self, coupon_id: &str) -> String {
        format!("{}:cpn:{coupon_id}", self.base)
    }

    /// The stored answer for `user`'s idempotency key on a claim of this policy.
    pub fn idempotency(&self, user: &str, key: &str) -> String {
        idempotency_key(&self.base, user, key)
    }
}

/// Whose events an outbox stream holds; its key tells (`fg:{s:42}:outbox` is sale 42's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outbox {
    /// Admitted orders of a sale.
    Sale(u64),
    /// Coupon events of a policy.
    Policy(u64),
    /// Point events of a bucket of users.
    Points(u32),
}

impl Outbox {
    /// The stream's key.
    pub fn key(self, prefix: &str) -> String {
        match self {
            Self::Sale(id) => SaleKeys::new(prefix, id).outbox,
            Self::Policy(id) => PolicyKeys::new(prefix, id).outbox,
            Self::Points(bucket) => PointsKeys::new(prefix, bucket).outbox,
        }
    }

    /// The outbox a stream key belongs to, from its hash tag.
    pub fn of_key(key: &str) -> Option<Self> {
        let start = key.find('{')? + 1;
        let end = start + key[start..].find('}')?;
        let (kind, id) = key[start..end].split_once(':')?;
        match kind {
            "s" => id.parse().ok().map(Self::Sale),
            "c" => id.parse().ok().map(Self::Policy),
            "p" => id.parse().ok().map(Self::Points),
            _ => None,
        }
    }

    /// Prometheus label naming the outbox (`sale_id="42"`).
    pub fn label(self) -> String {
        match self {
            Self::Sale(id) => format!("sale_id=\"{id}\""),
            Self::Policy(id) => format!("policy_id=\"{id}\""),
            Self::Points(bucket) => format!("points_bucket=\"{bucket}\""),
        }
    }
}

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
    fn all_keys_of_a_sale_share_one_hash_tag() {
        let keys = SaleKeys::new("fg", 42);
        for key in [
            &keys.sale,
            &keys.stock,
            &keys.buyers,
            &keys.outbox,
            &keys.orders,
            &keys.discounts,
            &keys.idempotency("u1", "k1"),
        ] {
            assert!(key.starts_with("fg:{s:42}:"), "{key}");
        }
        assert_eq!(Outbox::of_key(&keys.outbox), Some(Outbox::Sale(42)));
        assert_eq!(Outbox::of_key("fg:outboxes:active"), None);
    }

    #[test]
    fn an_outbox_key_names_its_owner() {
        for outbox in [Outbox::Sale(7), Outbox::Policy(7), Outbox::Points(3)] {
            assert_eq!(Outbox::of_key(&outbox.key("fg")), Some(outbox));
        }
        let policy = PolicyKeys::new("fg", 9);
        for key in [
            &policy.policy,
            &policy.remaining,
            &policy.holders,
            &policy.outbox,
            &policy.coupon("9-x"),
            &policy.idempotency("u", "k"),
        ] {
            assert!(key.starts_with("fg:{c:9}:"), "{key}");
        }
    }

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
    fn idempotency_keys_of_different_users_never_share_a_name() {
        let sale = SaleKeys::new("fg", 1);
        let policy = PolicyKeys::new("fg", 1);
        let points = PointsKeys::new("fg", 1);
        let names = |user: &str, key: &str| {
            [
                sale.idempotency(user, key),
                policy.idempotency(user, key),
                points.idempotency(user, key),
            ]
        };
        let pairs = [
            ("a", "b:c"),
            ("a:b", "c"),
            ("a%3Ab", "c"),
            ("a%", "3Ab:c"),
            ("a", "b"),
        ];
        for (i, (user_a, key_a)) in pairs.iter().enumerate() {
            for (user_b, key_b) in &pairs[i + 1..] {
                for (a, b) in names(user_a, key_a).iter().zip(names(user_b, key_b).iter()) {
                    assert_ne!(a, b, "{user_a}+{key_a} vs {user_b}+{key_b}");
                }
            }
        }
        // Plain user ids keep the names stored answers had before the escaping.
        assert_eq!(sale.idempotency("alice", "k:1"), "fg:{s:1}:idem:alice:k:1");
        assert_eq!(sale.idempotency("a:b", "c"), "fg:{s:1}:idem:a%3Ab:c");
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
