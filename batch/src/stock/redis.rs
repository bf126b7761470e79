//! The Redis side of the stock reconciliation: one sale's counters read in one step, and their
//! conditional repair (`lua/stock_repair.lua`), and the restock announcement after a repair
//! that gave units back.

use anyhow::Context;
use flashgate_events::keys::{SaleKeys, restock_channel};
use fred::prelude::{Pool, PubsubInterface, Value};
use fred::types::scripts::Script;

use super::judge::{Counters, RedisSale, Stored};

/// What the repair script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockRepair {
    /// The counters were set.
    Repaired,
    /// They already held the values (a retried call, or another run repaired them).
    Already,
    /// Something ran since the read (a counter differs from it, or the outbox is not empty):
    /// nothing was written. What Redis holds now.
    Moved(RedisSale),
    /// The sale left Redis (cleaned up) since the read: nothing was written.
    Gone,
    /// The script refused values that do not add up to Redis's total (it moved since the
    /// read): nothing was written.
    Unbalanced,
    /// The open orders Redis holds hold this many units, not the `held` to set (-1: one has
    /// no record): nothing was written.
    OpenOrders(i64),
}

/// The stock counters of the sales under one key prefix.
#[derive(Debug, Clone)]
pub struct StockCounters {
    /// The Redis the gateway admits purchases in.
    redis: Pool,
    /// `redis.key_prefix`, so the keys are the gateway's.
    prefix: String,
    /// `lua/stock_repair.lua`: read, and compare-and-set.
    script: Script,
}

impl StockCounters {
    /// The counters under `prefix` (`redis.key_prefix`).
    pub fn new(redis: Pool, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            script: Script::from_lua(include_str!("../../../lua/stock_repair.lua")),
        }
    }

    fn keys(&self, sale_id: u64) -> Vec<String> {
        let keys = SaleKeys::new(&self.prefix, sale_id);
        vec![keys.sale, keys.stock, keys.outbox, keys.holds, keys.orders]
    }

    /// `sale_id`'s counters and outbox length, as of one instant.
    pub async fn read(&self, sale_id: u64) -> anyhow::Result<RedisSale> {
        let reply: Vec<Value> = self
            .script
            .evalsha_with_reload(self.redis.next(), self.keys(sale_id), vec!["read"])
            .await
            .context("reading a sale's counters from Redis")?;
        anyhow::ensure!(
            reply.len() == 6,
            "stock_repair.lua read answered {} values, not 6",
            reply.len()
        );
        Ok(RedisSale {
            loaded: integer(&reply[0]) == 1,
            total: stored(&reply[1]),
            stock: stored(&reply[2]),
            held: stored(&reply[3]),
            paid: stored(&reply[4]),
            outbox: u64::try_from(integer(&reply[5])).unwrap_or(0),
        })
    }

    /// Sets `sale_id`'s counters to `to`, only if stock, held and paid are still those of
    /// `read` and its outbox is still empty.
    pub async fn repair(
        &self,
        sale_id: u64,
        read: &RedisSale,
        to: Counters,
    ) -> anyhow::Result<StockRepair> {
        let args = vec![
            "repair".to_owned(),
            read.stock.raw().to_owned(),
            read.held.raw().to_owned(),
            read.paid.raw().to_owned(),
            to.stock.to_string(),
            to.held.to_string(),
            to.paid.to_string(),
        ];
        let reply: Vec<Value> = self
            .script
            .evalsha_with_reload(self.redis.next(), self.keys(sale_id), args)
            .await
            .context("repairing a sale's counters in Redis")?;
        let code = reply.first().and_then(Value::as_string).unwrap_or_default();
        Ok(match (code.as_str(), reply.as_slice()) {
            ("repaired", _) => StockRepair::Repaired,
            ("already", _) => StockRepair::Already,
            ("gone", _) => StockRepair::Gone,
            ("unbalanced", _) => StockRepair::Unbalanced,
            ("records", [_, units]) => StockRepair::OpenOrders(integer(units)),
            ("moved", [_, stock, held, paid, outbox]) => StockRepair::Moved(RedisSale {
                loaded: true,
                total: read.total.clone(),
                stock: stored(stock),
                held: stored(held),
                paid: stored(paid),
                outbox: u64::try_from(integer(outbox)).unwrap_or(0),
            }),
            _ => anyhow::bail!("stock_repair.lua repair answered {reply:?}"),
        })
    }

    /// Tells every gateway that `sale_id` has stock again, so none keeps answering sold out
    /// from its in-process mark.
    pub async fn announce_restock(&self, sale_id: u64) -> anyhow::Result<()> {
        let _: i64 = self
            .redis
            .next()
            .publish(restock_channel(&self.prefix), sale_id)
            .await
            .context("announcing restock")?;
        Ok(())
    }
}

/// A counter as the script answers it: `''` for absent.
fn stored(value: &Value) -> Stored {
    Stored(value.as_string().filter(|text| !text.is_empty()))
}

fn integer(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}
