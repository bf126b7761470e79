//! The keys of a sale (hash tag `{s:<sale>}`), and the channel that says it has stock again.

use super::idempotency::idempotency_key;

/// The keys of one sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleKeys {
    /// Hash: status, window, payment window (`window_ms`), price, per-user limit, total, and
    /// the counters `admitted`, `held` (units in open orders), `paid` (units in paid orders);
    /// `loaded_ms` once restored, and while a restore loads its orders (`lua/load_holds.lua`)
    /// `holds_loading`, `holds_after`, `buyers_loading`, `loading_status`.
    pub sale: String,
    /// String: units left.
    pub stock: String,
    /// Hash: user id → units admitted.
    pub buyers: String,
    /// Stream: admitted orders waiting for the relay.
    pub outbox: String,
    /// Hash: order id → `user\nquantity\nadmitted_ms\npay_by_ms\nstate\nat_ms\nreason` of
    /// every open order, and of an ended one until MySQL holds its end (`lua/order_forget.lua`).
    pub orders: String,
    /// Sorted set: order id → `pay_by` in ms, exactly the open orders (they hold units).
    pub holds: String,
    /// Hash: order id → `due_ms\nuser\nref...` of an ended order whose coupon or points are
    /// still to be given back; removed once they are.
    pub compensate: String,
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
            holds: format!("{base}:holds"),
            compensate: format!("{base}:compensate"),
            discounts: format!("{base}:discounts"),
            prefix: base,
        }
    }

    /// Every key of the sale but its stored answers, in the order `lua/order_close.lua` and
    /// `lua/sale_cleanup.lua` take them as KEYS: sale, stock, buyers, outbox, orders, holds,
    /// discounts, compensate.
    pub fn lifecycle(&self) -> Vec<String> {
        [
            &self.sale,
            &self.stock,
            &self.buyers,
            &self.outbox,
            &self.orders,
            &self.holds,
            &self.discounts,
            &self.compensate,
        ]
        .into_iter()
        .cloned()
        .collect()
    }

    /// The stored answer for `user`'s idempotency key on this sale.
    pub fn idempotency(&self, user: &str, key: &str) -> String {
        idempotency_key(&self.prefix, user, key)
    }
}

/// Set of the ids of the sales whose keys are in Redis: the lifecycle sweeper's list (expiry,
/// compensations, cleanup). A sale joins it when loaded and leaves it when cleaned up.
pub fn live_sales(prefix: &str) -> String {
    format!("{prefix}:sales:live")
}

/// Pub/sub channel announcing that a sale has stock again (clears sold-out caches).
pub fn restock_channel(prefix: &str) -> String {
    format!("{prefix}:restock")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Outbox;

    #[test]
    fn all_keys_of_a_sale_share_one_hash_tag() {
        let keys = SaleKeys::new("fg", 42);
        for key in keys
            .lifecycle()
            .iter()
            .chain([&keys.idempotency("u1", "k1")])
        {
            assert!(key.starts_with("fg:{s:42}:"), "{key}");
        }
        assert_eq!(Outbox::of_key(&keys.outbox), Some(Outbox::Sale(42)));
        assert_eq!(Outbox::of_key("fg:outboxes:active"), None);
    }
}
