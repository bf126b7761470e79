//! The lifecycle sweeper, in every gateway: each pass, for every sale Redis holds, it expires
//! the open orders past their `pay_by`, finishes the give-backs that are due, and removes the
//! keys of a sale whose life is over; then it removes the coupon policies whose coupons have
//! all expired (`coupons/cleanup.rs`).
//!
//! It keeps no state of its own: what to do is in Redis (`holds`, `compensate`, the sale's
//! end), and each step is a script that does its work once whoever runs it. So a sweeper that
//! dies mid-pass loses nothing (the next pass, here or in another gateway, finds the same work
//! still listed), several gateways sweep at once without doing anything twice, and an order
//! whose `pay_by` passed while no gateway ran expires on the first pass after one starts.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fred::prelude::{ClientLike, HashesInterface, Pool, SetsInterface};
use tokio::sync::watch;
use tracing::Instrument;

use crate::app::App;
use crate::keys::{self, SaleKeys};
use crate::lifecycle::close;
use crate::lifecycle::give_back::{Owed, give_back};

/// Orders expired per sale in one pass at most; the rest wait for the next pass (a second).
const EXPIRE_PER_PASS: u64 = 20_000;

/// Reason recorded on an expired order.
pub const NOT_PAID_IN_TIME: &str = "not_paid_in_time";

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Orders expired now.
    pub expired: u64,
    /// Orders whose give-backs were finished (entries removed).
    pub given_back: u64,
    /// Sales whose keys were removed.
    pub cleaned: u64,
    /// Coupon policies whose keys were removed.
    pub policies_cleaned: u64,
}

/// Sweeps every `interval` until `stop` changes.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(app.settings.gateway.lifecycle_sweep_interval_ms);
    loop {
        if let Err(err) = sweep(&app).await {
            app.metrics.observe_lifecycle("sweep_failed");
            tracing::warn!(
                error = format!("{err:#}"),
                "lifecycle sweep failed; trying again"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Redis's clock, in ms: the scripts judge by it, so the sweeper looks by it too.
async fn redis_now(redis: &Pool) -> anyhow::Result<DateTime<Utc>> {
    let (secs, micros): (i64, i64) = redis
        .next()
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await?;
    DateTime::from_timestamp_micros(secs * 1_000_000 + micros)
        .ok_or_else(|| anyhow::anyhow!("Redis TIME out of range"))
}

/// One pass over every sale Redis holds.
pub async fn sweep(app: &App) -> anyhow::Result<Swept> {
    let sales: Vec<u64> = app.redis.smembers(keys::live_sales(app.prefix())).await?;
    let mut swept = Swept::default();
    for sale_id in sales {
        let now = redis_now(&app.redis).await?;
        let keys = SaleKeys::new(app.prefix(), sale_id);
        swept.expired += expire_due(app, sale_id).await?;
        swept.given_back += finish_give_backs(app, &keys, now).await?;
        if clean_up(app, sale_id, &keys).await? {
            swept.cleaned += 1;
        }
    }
    // Coupon policies whose coupons have all expired leave Redis the same way.
    swept.policies_cleaned =
        crate::coupons::cleanup::sweep_policies(app, app.settings.gateway.sale_cleanup_grace_ms)
            .await? as u64;
    Ok(swept)
}

/// Expires the sale's orders whose `pay_by` has passed by Redis's clock, a batch per script
/// call, until a batch comes back short (or [`EXPIRE_PER_PASS`] were expired: other sales get
/// their turn, the rest wait for the next pass). Their coupons and points are given back when
/// their `compensate` entries are due.
async fn expire_due(app: &App, sale_id: u64) -> anyhow::Result<u64> {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    // The pass's trace id is each expired order's (its end's outbox entry carries it): the
    // relay's and the persister's lines about the order name both, and lead here.
    let span = tracing::info_span!("sweep", trace_id = %trace_id);
    expire_in(app, sale_id, &trace_id).instrument(span).await
}

async fn expire_in(app: &App, sale_id: u64, trace_id: &str) -> anyhow::Result<u64> {
    let batch = app.settings.gateway.lifecycle_expire_batch;
    let mut expired = 0;
    loop {
        let (ids, due) = close::expire_due(app, sale_id, batch, NOT_PAID_IN_TIME, trace_id).await?;
        log_expired(&ids, trace_id);
        let now = ids.len() as u64;
        expired += now;
        for _ in 0..now {
            app.metrics.observe_lifecycle("expired");
        }
        if due < batch || expired >= EXPIRE_PER_PASS {
            break;
        }
    }
    if expired > 0 {
        tracing::info!(sale_id, expired, "orders expired: not paid in time");
    }
    Ok(expired)
}

/// A debug line per order expired, in a span with its `order_id` and the pass's `trace_id`
/// (that of its end's outbox entry), as every binary's lines about an order are. A rush can
/// expire thousands at once: nothing is done unless debug is on for this file.
fn log_expired(ids: &[String], trace_id: &str) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    for order_id in ids {
        let span = tracing::info_span!("order", order_id = %order_id, trace_id = %trace_id);
        span.in_scope(|| tracing::debug!(reason = NOT_PAID_IN_TIME, "order expired"));
    }
}

/// Finishes the give-backs of the sale that are due and removes each entry once done.
async fn finish_give_backs(app: &App, keys: &SaleKeys, now: DateTime<Utc>) -> anyhow::Result<u64> {
    let entries: std::collections::HashMap<String, String> =
        app.redis.hgetall(&keys.compensate).await?;
    let mut finished = 0;
    for (order_id, value) in entries {
        let Some(owed) = Owed::parse(&order_id, &value) else {
            tracing::warn!(order_id, value, "unreadable give-back entry dropped");
            let _: i64 = app.redis.hdel(&keys.compensate, &order_id).await?;
            continue;
        };
        if owed.due.is_some_and(|due| due > now) {
            continue;
        }
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        // Its lines carry the order, as its request's and the other binaries' lines do.
        let span = tracing::info_span!("order", order_id = %order_id, trace_id = %trace_id);
        if give_back(app, &owed, &trace_id).instrument(span).await {
            // The order's discount reservations go first, then the entry: a crash between
            // the two leaves the entry, and the next pass does it all again harmlessly.
            let mut fields = vec![order_id.clone(), format!("{order_id}\nrefs")];
            fields.extend(owed.refs.iter().map(|r| format!("{order_id}\n{r}")));
            let _: i64 = app.redis.hdel(&keys.discounts, fields).await?;
            let _: i64 = app.redis.hdel(&keys.compensate, &order_id).await?;
            finished += 1;
        }
    }
    Ok(finished)
}

/// Removes the sale's keys when its life is over; true when removed now.
async fn clean_up(app: &App, sale_id: u64, keys: &SaleKeys) -> anyhow::Result<bool> {
    // The waiting room's keys go with the sale's (the admitter then drops it from its list).
    let mut names = keys.lifecycle();
    names.extend(crate::queue::keys::QueueKeys::new(app.prefix(), sale_id).all());
    let grace = crate::scripts::int(app.settings.gateway.sale_cleanup_grace_ms);
    let outcome: String = app
        .scripts
        .sale_cleanup
        .run(&app.redis, names, vec![grace])
        .await?;
    match outcome.as_str() {
        "cleaned" | "gone" => {
            // Both on other slots, both harmless to repeat.
            let _: i64 = app
                .redis
                .srem(keys::live_sales(app.prefix()), sale_id)
                .await?;
            let _: i64 = app
                .redis
                .srem(keys::active_outboxes(app.prefix()), &keys.outbox)
                .await?;
            if outcome == "cleaned" {
                app.metrics.observe_lifecycle("sale_cleaned");
                tracing::info!(sale_id, "sale over: its keys left Redis");
            }
            Ok(outcome == "cleaned")
        }
        _ => Ok(false),
    }
}
