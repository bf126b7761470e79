//! A sale's state in Redis, derived from MySQL: loading it (and registering its outbox),
//! restoring what Redis lost, its live counters, and its status.

use anyhow::Context;
use fred::prelude::{HashesInterface, Pool, PubsubInterface, SetsInterface, Value};
use sqlx::MySqlPool;

use crate::keys::{self, SaleKeys};
use crate::outbox::registry;
use crate::owned_state::{self, set_status_in_redis};
use crate::sales::sale::Sale;
use crate::sales::store::{
    HeldAndPaid, OpenOrder, find, held_and_paid, open_orders_after, open_sales, persisted_buyers,
};
use crate::scripts::{Script, Scripts, reply_int, reply_text, unexpected_reply};

/// Open orders read from MySQL and loaded into Redis per page: a page is one short range read
/// and one `lua/load_holds.lua` call of a few milliseconds, however many orders the sale has,
/// and only one page is in memory at a time.
pub const HOLDS_PAGE: u32 = 1_000;

/// Loads a sale into Redis unless Redis already holds it (then its live counters win), with
/// its open orders held again, and registers its outbox with the relay. Finding the sale with
/// its holds still loading (a gateway died mid-way), it goes on loading them. Returns whether
/// it loaded (or finished loading) the sale.
pub async fn load_into_redis(
    redis: &Pool,
    db: &MySqlPool,
    scripts: &Scripts,
    prefix: &str,
    sale: &Sale,
) -> anyhow::Result<bool> {
    load_stopping_after(redis, db, scripts, prefix, sale, None).await
}

/// Test hook: [`load_into_redis`] that stops after `pages` pages of open orders, as a gateway
/// that died while loading them would.
#[doc(hidden)]
pub async fn load_stopping_after(
    redis: &Pool,
    db: &MySqlPool,
    scripts: &Scripts,
    prefix: &str,
    sale: &Sale,
    pages: Option<usize>,
) -> anyhow::Result<bool> {
    let keys = SaleKeys::new(prefix, sale.sale_id);
    let (buyers, counted) = if sale.sold > 0 {
        (
            persisted_buyers(db, sale.sale_id).await?,
            held_and_paid(db, sale.sale_id).await?,
        )
    } else {
        (Vec::new(), HeldAndPaid::default())
    };
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
        counted.held.into(),
        counted.paid.into(),
        counted.open_orders.into(),
        i64::try_from(buyers.len()).unwrap_or(i64::MAX).into(),
    ];
    for (user, units) in buyers {
        args.push(user.into());
        args.push(units.into());
    }
    let state = vec![keys.sale.clone(), keys.stock.clone(), keys.buyers.clone()];
    let reply: i64 = scripts
        .load_sale
        .run(redis, state, args)
        .await
        .context("loading the sale into Redis")?;
    // Where loading the open orders starts: the first page, or where a gateway that died
    // while loading them stopped.
    let (loaded, holds_from) = match reply {
        0 => (false, None),
        1 => (true, (counted.open_orders > 0).then(String::new)),
        2 => {
            let after: Option<String> = redis
                .hget(&keys.sale, "holds_after")
                .await
                .context("reading where loading the holds stands")?;
            let after = after.unwrap_or_default();
            tracing::warn!(
                sale_id = sale.sale_id,
                after,
                "the sale's open orders were not all held again: loading the rest"
            );
            (true, Some(after))
        }
        other => return Err(unexpected_reply("load_sale", &other.to_string()).into()),
    };
    if let Some(after) = holds_from
        && !load_holds(redis, db, &scripts.load_holds, &keys, sale, &after, pages).await?
    {
        // The test hook stopped it, as if this gateway had died here.
        return Ok(true);
    }
    registry::register(redis, prefix, &keys.outbox)
        .await
        .context("registering the outbox with the relay")?;
    // Listed for the sweeper once its holds are in: expiring and cleaning up a sale half
    // loaded could remove its keys before the rest of its orders are held.
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

/// Holds the sale's open orders again, a page at a time from after `after`, until the last
/// page is in (or `pages` pages were loaded, the test hook: then it answers false, and the
/// caller stops there as if it had died). Any number of gateways may do this at once:
/// `lua/load_holds.lua` takes each page once, in order, and tells the others where loading
/// stands.
async fn load_holds(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    keys: &SaleKeys,
    sale: &Sale,
    after: &str,
    pages: Option<usize>,
) -> anyhow::Result<bool> {
    let mut after = after.to_owned();
    let (mut loaded_pages, mut created) = (0_usize, 0_i64);
    loop {
        if pages.is_some_and(|pages| loaded_pages >= pages) {
            return Ok(false);
        }
        // A fresh query per page: an order that ended (in MySQL) since the last one is not read.
        let page = open_orders_after(db, sale, &after, HOLDS_PAGE).await?;
        let last = page.len() < HOLDS_PAGE as usize;
        let next = page.last().map(|order| order.order_id.clone());
        let reply = load_page(redis, script, keys, &after, &page, last).await?;
        match reply {
            PageLoaded::Loaded(now) => {
                created += now;
                loaded_pages += 1;
                if last {
                    tracing::info!(sale_id = sale.sale_id, created, "open orders held again");
                    return Ok(true);
                }
                after = next.unwrap_or_default();
            }
            // Another gateway loaded this page: go on where it stands.
            PageLoaded::Moved(stands) => after = stands,
            // Another gateway loaded the last page (or the sale left Redis: the next
            // restore brings it back with what is still open).
            PageLoaded::Done => return Ok(true),
        }
    }
}

/// What `lua/load_holds.lua` did with a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageLoaded {
    /// The page is in; this many orders got a record and a hold now.
    Loaded(i64),
    /// Loading stands after this order id, not where the page starts: nothing done.
    Moved(String),
    /// No holds are loading (finished, or the sale is not in Redis): nothing done.
    Done,
}

/// Runs `lua/load_holds.lua` on one page of open orders read after `after`; `last` when
/// MySQL had no more.
pub async fn load_page(
    redis: &Pool,
    script: &Script,
    keys: &SaleKeys,
    after: &str,
    page: &[OpenOrder],
    last: bool,
) -> anyhow::Result<PageLoaded> {
    let mut args: Vec<Value> = Vec::with_capacity(2 + 5 * page.len());
    args.push(after.into());
    args.push(i64::from(last).into());
    for order in page {
        args.push(order.order_id.as_str().into());
        args.push(order.user_id.as_str().into());
        args.push(i64::from(order.quantity).into());
        args.push(order.admitted_ms.into());
        args.push(order.pay_by_ms.into());
    }
    let state = vec![keys.sale.clone(), keys.orders.clone(), keys.holds.clone()];
    let reply: Vec<Value> = script
        .run(redis, state, args)
        .await
        .context("holding a page of open orders again")?;
    match reply_text(&reply, 0).as_str() {
        "loaded" => Ok(PageLoaded::Loaded(reply_int(&reply, 1))),
        "moved" => Ok(PageLoaded::Moved(reply_text(&reply, 1))),
        "done" => Ok(PageLoaded::Done),
        other => Err(unexpected_reply("load_holds", other).into()),
    }
}

/// Restores every open sale that Redis lost (after a restart without data, or a failover
/// that lost writes), and finishes loading the open orders of any whose loading a gateway
/// left half done. Returns how many were loaded.
pub async fn restore(
    redis: &Pool,
    db: &MySqlPool,
    scripts: &Scripts,
    prefix: &str,
) -> anyhow::Result<usize> {
    let mut loaded = 0;
    for sale in open_sales(db).await? {
        if load_into_redis(redis, db, scripts, prefix, &sale).await? {
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
