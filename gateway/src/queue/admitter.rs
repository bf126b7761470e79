//! The admitter, in every gateway: each `queue.tick_ms`, for every waiting room Redis holds,
//! one `lua/queue_admit.lua` call expires passes, drops idle tickets and admits the next
//! positions at the room's rate. At the sale's start the first tick to see the draw due draws
//! (the order from `flashgate_events::draw`, recorded in MySQL first, then applied in Redis by
//! `lua/queue_draw.lua`); gateways that draw at once compute the same order, and only the
//! first record counts.
//!
//! It keeps no state of its own: admission accrues by Redis's clock since the last tick,
//! whichever gateway ran it, so any number of gateways admit at the room's rate together.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flashgate_events::draw;
use fred::prelude::{Pool, SetsInterface, SortedSetsInterface, Value};
use tokio::sync::watch;

use crate::app::App;
use crate::queue::keys::{QueueKeys, live_queues};
use crate::queue::store;
use crate::scripts::{int, reply_int, reply_text, unexpected_reply};

/// Most tickets one tick handles per step (expiries, drops, admissions): bounds how long the
/// script holds Redis; the rest wait for the next tick.
const PER_TICK: u64 = 5_000;

/// What one tick did to one room.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ticked {
    /// Tickets admitted now.
    pub admitted: i64,
    /// Passes expired unused now.
    pub expired: i64,
    /// Idle tickets dropped now.
    pub dropped: i64,
    /// The draw ran now (here).
    pub drew: bool,
}

/// Ticks every `queue.tick_ms` until `stop` changes.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(app.settings.queue.tick_ms);
    loop {
        if let Err(err) = tick_all(&app).await {
            tracing::warn!(
                error = format!("{err:#}"),
                "queue admitter tick failed; trying again"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => break,
        }
    }
}

/// One tick of every room Redis holds.
pub async fn tick_all(app: &App) -> anyhow::Result<()> {
    let sales: Vec<u64> = app
        .redis
        .smembers(live_queues(app.prefix()))
        .await
        .context("listing waiting rooms")?;
    for sale_id in sales {
        match tick(app, sale_id).await {
            Ok(ticked) => {
                let metrics = &app.metrics;
                metrics.observe_queue("admitted", ticked.admitted.max(0) as u64);
                metrics.observe_queue("expired", ticked.expired.max(0) as u64);
                metrics.observe_queue("dropped", ticked.dropped.max(0) as u64);
                metrics.observe_queue("drawn", u64::from(ticked.drew));
            }
            Err(err) => {
                app.metrics.observe_queue("tick_failed", 1);
                tracing::warn!(sale_id, error = format!("{err:#}"), "queue tick failed");
            }
        }
    }
    Ok(())
}

/// One tick of one room (drawing first when the draw is due).
pub async fn tick(app: &App, sale_id: u64) -> anyhow::Result<Ticked> {
    let mut ticked = Ticked::default();
    for _ in 0..2 {
        let reply = admit_once(app, sale_id).await?;
        match reply_text(&reply, 0).as_str() {
            "ok" => {
                ticked.admitted = reply_int(&reply, 1);
                ticked.expired = reply_int(&reply, 2);
                ticked.dropped = reply_int(&reply, 3);
                return Ok(ticked);
            }
            "waiting" => return Ok(ticked),
            "draw_due" => ticked.drew = run_draw(app, sale_id).await?,
            "gone" => {
                // Cleaned up with its sale: the admitter's list lets it go.
                let _: i64 = app.redis.srem(live_queues(app.prefix()), sale_id).await?;
                return Ok(ticked);
            }
            other => return Err(unexpected_reply("queue_admit", other).into()),
        }
    }
    Ok(ticked)
}

async fn admit_once(app: &App, sale_id: u64) -> anyhow::Result<Vec<Value>> {
    let keys = QueueKeys::new(app.prefix(), sale_id);
    let sale_keys = crate::keys::SaleKeys::new(app.prefix(), sale_id);
    let queue = &app.settings.queue;
    let args = vec![
        int(queue.pass_ttl_seconds.saturating_mul(1000)),
        int(queue.idle_seconds.saturating_mul(1000)),
        int(PER_TICK),
    ];
    app.scripts
        .queue_admit
        .run(
            &app.redis,
            vec![
                keys.q,
                keys.tickets,
                keys.seen,
                keys.line,
                keys.active,
                sale_keys.buyers,
            ],
            args,
        )
        .await
        .context("running the admitter")
}

/// Draws: orders the tickets that joined before the start by the seed, records the order in
/// MySQL (the public record), then applies the recorded order in Redis. True when this call
/// applied it.
pub async fn run_draw(app: &App, sale_id: u64) -> anyhow::Result<bool> {
    let keys = QueueKeys::new(app.prefix(), sale_id);
    let stored = store::find(&app.db, sale_id)
        .await?
        .context("a queued sale without its queue row")?;
    let seed = draw::parse_seed(&stored.seed).context("the stored seed")?;
    let joined: Vec<String> = read_all(&app.redis, &keys.pre).await?;
    let ordered = draw::order(&seed, &joined);
    let recorded = store::record_draw(&app.db, sale_id, &ordered).await?;
    let mut args: Vec<Value> = Vec::with_capacity(recorded.len() + 1);
    args.push(i64::try_from(recorded.len()).unwrap_or(i64::MAX).into());
    args.extend(recorded.iter().map(|t| Value::from(t.as_str())));
    let reply: Vec<Value> = app
        .scripts
        .queue_draw
        .run(
            &app.redis,
            vec![
                keys.q,
                keys.tickets,
                keys.seen,
                keys.pre,
                keys.late,
                keys.line,
            ],
            args,
        )
        .await
        .context("applying the draw")?;
    match reply_text(&reply, 0).as_str() {
        "drawn" => {
            tracing::info!(
                sale_id,
                drawn = reply_int(&reply, 1),
                late = reply_int(&reply, 2),
                "queue draw done"
            );
            Ok(true)
        }
        "already" | "gone" => Ok(false),
        "stale" => anyhow::bail!(
            "the recorded draw ({} tickets) does not match the {} tickets that joined before \
             the start",
            recorded.len(),
            reply_int(&reply, 1)
        ),
        other => Err(unexpected_reply("queue_draw", other).into()),
    }
}

/// Every member of a sorted set, in score order.
async fn read_all(redis: &Pool, key: &str) -> anyhow::Result<Vec<String>> {
    redis
        .zrange(key, 0, -1, None, false, None, false)
        .await
        .context("reading the tickets that joined before the start")
}
