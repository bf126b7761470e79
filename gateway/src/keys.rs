//! Redis key names. Every key of one sale shares the hash tag `{s:<id>}`, so a script that
//! touches them stays on one Redis Cluster slot; scripts get keys only through `KEYS`.

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
            prefix: base,
        }
    }

    /// The stored answer for `user`'s idempotency key on this sale.
    pub fn idempotency(&self, user: &str, key: &str) -> String {
        format!("{}:idem:{user}:{key}", self.prefix)
    }
}

/// Set of the ids of sales whose outbox the relay reads.
pub fn active_sales(prefix: &str) -> String {
    format!("{prefix}:sales:active")
}

/// Pub/sub channel announcing that a sale has stock again (clears sold-out caches).
pub fn restock_channel(prefix: &str) -> String {
    format!("{prefix}:restock")
}

/// The sale id of an outbox key (`fg:{s:42}:outbox` → 42).
pub fn sale_id_of(key: &str) -> Option<u64> {
    let start = key.find("{s:")? + 3;
    let end = start + key[start..].find('}')?;
    key[start..end].parse().ok()
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
            &keys.idempotency("u1", "k1"),
        ] {
            assert!(key.starts_with("fg:{s:42}:"), "{key}");
        }
        assert_eq!(sale_id_of(&keys.outbox), Some(42));
        assert_eq!(sale_id_of("fg:sales:active"), None);
    }
}
