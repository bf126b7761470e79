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
    HeldAndPaid, StoredOrder, find, held_and_paid, open_sales, orders_after,
};
use crate::scripts::{Script, Scripts, reply_int, reply_text, unexpected_reply};

/// Orders read from MySQL and loaded into Redis per page: a page is two short range reads and
/// one `lua/load_holds.lua` call of a few milliseconds, however many orders the sale has, and
/// only one page is in memory at a time.
pub const HOLDS_PAGE: u32 = 1_000;

/// Loads a sale into Redis unless Redis already holds it (then its live counters win), with
/// its open orders held again and its buyers' counts, and registers its outbox with the relay.
/// Finding the sale with its orders still loading (a gateway died mid-way), it goes on loading
/// them. Returns whether it loaded (or finished loading) the sale.
pub async fn load_into_redis(
    redis: &Pool,
    db: &MySqlPool,
    scripts: &Scripts,
    prefix: &str,
    sale: &Sale,
) -> anyhow::Result<bool> {
    load_stopping_after(redis, db, scripts, prefix, sale, None).await
}

/// Test hook: [`load_into_redis`] that stops after `pages` pages of orders, as a gateway that
/// died while loading them would.
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
    let counted = if sale.sold > 0 {
        held_and_paid(db, sale.sale_id).await?
    } else {
        HeldAndPaid::default()
    };
    // A sale behind a waiting room is marked `queued` (purchase.lua then wants a pass).
    let queue = crate::queue::store::find(db, sale.sale_id).await?;
    let args: Vec<Value> = vec![
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
        counted.paid_orders.into(),
        if queue.is_some() { "1" } else { "0" }.into(),
    ];
    let state = vec![keys.sale.clone(), keys.stock.clone(), keys.buyers.clone()];
    let reply: i64 = scripts
        .load_sale
        .run(redis, state, args)
        .await
        .context("loading the sale into Redis")?;
    let loaded = match reply {
        0 => false,
        1 | 2 => true,
        other => return Err(unexpected_reply("load_sale", &other.to_string()).into()),
    };
    if let Some(queue) = &queue {
        let drawn = match queue.drawn_at {
            Some(_) => crate::queue::store::published(db, sale.sale_id)
                .await?
                .map_or(0, |draw| draw.tickets.len()),
            None => 0,
        };
        crate::queue::room::open(redis, scripts, prefix, sale, queue, drawn).await?;
    }
    // In a task of its own: a caller that stops waiting (the request timeout of
    // `POST /v1/admin/sales/restore`, a client gone) does not leave the sale closed and half
    // loaded, or unknown to the relay and the sweeper, until the next restore.
    let loading = Loading {
        redis: redis.clone(),
        db: db.clone(),
        load_holds: scripts.load_holds.clone(),
        keys,
        sale: sale.clone(),
        prefix: prefix.to_owned(),
    };
    let finishing = tokio::spawn(loading.finish(loaded, pages));
    finishing.await.context("loading the sale into Redis")??;
    Ok(loaded)
}

/// What finishing a sale's loading needs, owned: it runs in a task of its own.
struct Loading {
    redis: Pool,
    db: MySqlPool,
    load_holds: Script,
    keys: SaleKeys,
    sale: Sale,
    prefix: String,
}

impl Loading {
    /// After `lua/load_sale.lua`: loads the sale's orders if they are loading, then registers
    /// its outbox with the relay, lists it for the sweeper and, when it was `loaded`,
    /// announces its stock.
    async fn finish(self, loaded: bool, pages: Option<usize>) -> anyhow::Result<()> {
        let Self {
            redis,
            db,
            load_holds,
            keys: sale_keys,
            sale,
            prefix,
        } = self;
        if !load_orders(&redis, &db, &load_holds, &sale_keys, &sale, pages).await? {
            // The test hook stopped it, as if this gateway had died here.
            return Ok(());
        }
        registry::register(&redis, &prefix, &sale_keys.outbox)
            .await
            .context("registering the outbox with the relay")?;
        // Listed for the sweeper once its orders are in: expiring and cleaning up a sale half
        // loaded could remove its keys before the rest of its orders are held.
        let _: i64 = redis
            .sadd(keys::live_sales(&prefix), sale.sale_id)
            .await
            .context("listing the sale for the lifecycle sweeper")?;
        if loaded {
            // A restored sale may have stock again: gateways drop their sold-out marks.
            let _: i64 = redis
                .next()
                .publish(keys::restock_channel(&prefix), sale.sale_id)
                .await
                .context("announcing restock")?;
        }
        Ok(())
    }
}

/// Loads the sale's orders while its hash says they are loading, a page at a time from where
/// loading stands, until the last page is in; true then. False when the test hook stopped it
/// after `pages` pages. Any number of gateways may do this at once: `lua/load_holds.lua` takes
/// each page once, in order, and tells the others where loading stands.
async fn load_orders(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    keys: &SaleKeys,
    sale: &Sale,
    pages: Option<usize>,
) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    let (loading, after, buyers_loading): (Option<String>, Option<String>, Option<String>) = redis
        .hmget(
            &keys.sale,
            vec!["holds_loading", "holds_after", "buyers_loading"],
        )
        .await
        .context("reading where loading the sale's orders stands")?;
    if loading.as_deref() != Some("1") {
        return Ok(true);
    }
    let mut after = after.unwrap_or_default();
    if !after.is_empty() {
        tracing::warn!(
            sale_id = sale.sale_id,
            after,
            "the sale's orders were not all loaded: loading the rest"
        );
    }
    // Paid orders only count for their buyers: not needed when the buyer list survived.
    let with_paid = buyers_loading.as_deref() == Some("1");
    let (mut loaded_pages, mut held) = (0_usize, 0_i64);
    loop {
        if pages.is_some_and(|pages| loaded_pages >= pages) {
            return Ok(false);
        }
        // A fresh query per page: an order that ended (in MySQL) since the last one is not read.
        let page = orders_after(db, sale, &after, with_paid, HOLDS_PAGE).await?;
        let next = page.orders.last().map(|order| order.order_id.clone());
        match load_page(redis, script, keys, &after, &page.orders, page.last).await? {
            PageLoaded::Loaded(now) => {
                held += now;
                loaded_pages += 1;
                if page.last {
                    tracing::info!(
                        sale_id = sale.sale_id,
                        held,
                        pages = loaded_pages,
                        elapsed_ms = started.elapsed().as_millis(),
                        "the sale's orders are loaded: open ones held again"
                    );
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
    /// The page is in; this many open orders got a record and a hold now.
    Loaded(i64),
    /// Loading stands after this order id, not where the page starts: nothing done.
    Moved(String),
    /// No orders are loading (finished, or the sale is not in Redis): nothing done.
    Done,
}

/// Runs `lua/load_holds.lua` on one page of orders read after `after`; `last` when MySQL had
/// no more.
pub async fn load_page(
    redis: &Pool,
    script: &Script,
    keys: &SaleKeys,
    after: &str,
    page: &[StoredOrder],
    last: bool,
) -> anyhow::Result<PageLoaded> {
    let mut args: Vec<Value> = Vec::with_capacity(2 + 6 * page.len());
    args.push(after.into());
    args.push(i64::from(last).into());
    for order in page {
        args.push(order.order_id.as_str().into());
        args.push(order.user_id.as_str().into());
        args.push(i64::from(order.quantity).into());
        args.push(order.admitted_ms.into());
        args.push(order.pay_by_ms.into());
        args.push(if order.paid { "paid" } else { "held" }.into());
    }
    let state = vec![
        keys.sale.clone(),
        keys.orders.clone(),
        keys.holds.clone(),
        keys.buyers.clone(),
    ];
    let reply: Vec<Value> = script
        .run(redis, state, args)
        .await
        .context("loading a page of the sale's orders")?;
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
    scripts: &Scripts,
    prefix: &str,
    sale_id: u64,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let keys = SaleKeys::new(prefix, sale_id);
    let read = &scripts.read_counters;
    owned_state::counters(redis, read, &keys.stock, &keys.sale, "admitted").await
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
