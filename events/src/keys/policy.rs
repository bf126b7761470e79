//! The keys of a coupon policy and its coupons (hash tag `{c:<policy>}`).

use super::idempotency::idempotency_key;

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

    /// Hash of one coupon of this policy: user, status, expiry, state sequence, order. It
    /// expires by itself some time after the coupon does (`lua/claim_coupon.lua`).
    pub fn coupon(&self, coupon_id: &str) -> String {
        format!("{}:cpn:{coupon_id}", self.base)
    }

    /// The stored answer for `user`'s idempotency key on a claim of this policy.
    pub fn idempotency(&self, user: &str, key: &str) -> String {
        idempotency_key(&self.base, user, key)
    }
}

/// Set of the ids of the coupon policies whose keys are in Redis: the cleanup's list
/// (`lua/policy_cleanup.lua`). A policy joins it when loaded and leaves it when cleaned up.
pub fn live_policies(prefix: &str) -> String {
    format!("{prefix}:policies:live")
}
