//! A sale's state in Redis, derived from MySQL: loading it (and registering its outbox),
//! restoring what Redis lost, its live counters, and its status.

use anyhow::Context;
use fred::prelude::{Pool, PubsubInterface, SetsInterface, Value};
use sqlx::MySqlPool;

use crate::keys::{self, SaleKeys};
use crate::owned_state::{self, load_and_register, set_status_in_redis};
use crate::sales::sale::Sale;
use crate::sales::store::{find, held_and_paid, open_sales, persisted_buyers};
use crate::scripts::Script;

/// Loads a sale into Redis unless Redis already holds it (then its live counters win), and
/// registers its outbox with the relay. Returns whether it was loaded.
pub async fn load_into_redis(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    prefix: &str,
    sale: &Sale,
) -> anyhow::Result<bool> {
    let keys = SaleKeys::new(prefix, sale.sale_id);
    let (buyers, (open, paid)) = if sale.sold > 0 {
        (
            persisted_buyers(db, sale.sale_id).await?,
            held_and_paid(db, sale).await?,
        )
    } else {
        (Vec::new(), (Vec::new(), 0))
    };
    let held: i64 = open.iter().map(|o| i64::from(o.quantity)).sum();
    let mut args: Vec<Value> = vec![
        sale.status.as_str().into(),
        sale.starts_at.timestamp_millis().into(),
        sale.ends_at.timestamp_millis().into(),
        i64::try_from(sale.price).unwrap_or(i64::MAX).into(),
        i64::from(sale.per_user_limit).into(),
        i64::from(sale.stock).into(),
        (i64::from(sale.stock) - i64::from(sale.sold)).into(),
        i64::from(sale.sold).into(),
        (i64::from(sale.payment_window_seconds) * 1000).into(),
        held.into(),
        paid.into(),
        i64::try_from(buyers.len()).unwrap_or(i64::MAX).into(),
    ];
    for (user, units) in buyers {
        args.push(user.into());
        args.push(units.into());
    }
    for order in open {
        args.push(order.order_id.into());
        args.push(order.user_id.into());
        args.push(i64::from(order.quantity).into());
        args.push(order.admitted_ms.into());
        args.push(order.pay_by_ms.into());
    }
    let state = vec![keys.sale, keys.stock, keys.buyers, keys.orders, keys.holds];
    let loaded = load_and_register(redis, script, state, args, prefix, &keys.outbox).await?;
    let _: i64 = redis
        .sadd(keys::live_sales(prefix), sale.sale_id)
        .await
        .context("listing the sale for the lifecycle sweeper")?;
    if loaded {
        // A restored sale may have stock again: gateways drop their sold-out marks.
        let _: i64 = redis
            .next()
            .publish(keys::restock_channel(prefix), sale.sale_id)
            .await
            .context("announcing restock")?;
    }
    Ok(loaded)
}

/// Restores every open sale that Redis lost (after a restart without data, or a failover
/// that lost writes). Returns how many were loaded.
pub async fn restore(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    prefix: &str,
) -> anyhow::Result<usize> {
    let mut loaded = 0;
    for sale in open_sales(db).await? {
        if load_into_redis(redis, db, script, prefix, &sale).await? {
            tracing::warn!(
                sale_id = sale.sale_id,
                "sale restored into Redis from MySQL"
            );
            loaded += 1;
        }
    }
    Ok(loaded)
}

/// Live counters of a sale from Redis: `(remaining, admitted)`.
pub async fn live_counters(
    redis: &Pool,
    prefix: &str,
    sale_id: u64,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let keys = SaleKeys::new(prefix, sale_id);
    owned_state::counters(redis, &keys.stock, &keys.sale, "admitted").await
}

/// Sets a sale's status (`active` or `paused`) in MySQL and in Redis. Returns false when
/// there is no such sale.
pub async fn set_status(
    redis: &Pool,
    db: &MySqlPool,
    prefix: &str,
    sale_id: u64,
    status: &str,
) -> anyhow::Result<bool> {
    let updated = sqlx::query("UPDATE sales SET status = ? WHERE sale_id = ?")
        .bind(status)
        .bind(sale_id)
        .execute(db)
        .await
        .context("updating sale status")?;
    if updated.rows_affected() == 0 && find(db, sale_id).await?.is_none() {
        return Ok(false);
    }
    set_status_in_redis(redis, &SaleKeys::new(prefix, sale_id).sale, status).await?;
    Ok(true)
}
