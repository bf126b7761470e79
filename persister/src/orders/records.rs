//! The orders' records in Redis (the sale's `orders` hash), forgotten once MySQL holds their
//! end (`lua/order_forget.lua`): the hash shrinks as orders reach MySQL.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use flashgate_events::keys::SaleKeys;
use fred::prelude::Pool;
use fred::types::scripts::Script;

/// Most orders forgotten by one script call (one call holds Redis for its whole run).
const ORDERS_PER_CALL: usize = 500;

/// Forgets the records of ended orders in the sales' slots.
#[derive(Debug, Clone)]
pub struct OrderRecords {
    /// The Redis the gateway keeps the sales in.
    redis: Pool,
    /// `redis.key_prefix`, so the keys are the gateway's.
    prefix: String,
    /// `lua/order_forget.lua`, run by its SHA (reloaded after a Redis restart).
    script: Script,
}

impl OrderRecords {
    /// The records under `prefix` (`redis.key_prefix`).
    pub fn new(redis: Pool, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            script: Script::from_lua(include_str!("../../../lua/order_forget.lua")),
        }
    }

    /// Forgets the records of `orders` (sale, order) that are final in Redis; an open (held)
    /// record is never touched. Returns how many records went. Safe to repeat: a batch
    /// retried after a failure here forgets again, and finds them absent.
    pub async fn forget<'o>(
        &self,
        orders: impl IntoIterator<Item = (u64, &'o str)>,
    ) -> anyhow::Result<u64> {
        let mut by_sale: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
        for (sale_id, order_id) in orders {
            by_sale.entry(sale_id).or_default().insert(order_id);
        }
        let mut forgotten = 0;
        for (sale_id, ids) in by_sale {
            let keys = SaleKeys::new(&self.prefix, sale_id);
            let ids: Vec<&str> = ids.into_iter().collect();
            for chunk in ids.chunks(ORDERS_PER_CALL) {
                let codes: Vec<String> = self
                    .script
                    .evalsha_with_reload(
                        self.redis.next(),
                        vec![keys.orders.clone(), keys.discounts.clone()],
                        chunk.to_vec(),
                    )
                    .await
                    .with_context(|| {
                        format!("forgetting ended orders of sale {sale_id} in Redis")
                    })?;
                forgotten += codes.iter().filter(|c| *c == "forgotten").count() as u64;
            }
        }
        Ok(forgotten)
    }
}
