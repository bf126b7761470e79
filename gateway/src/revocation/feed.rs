//! Keeps the denylist current: subscribes to the revocation channel, takes in every notice,
//! reads all live revocations again after each (re)connect of the subscriber — a Sentinel
//! failover, a dropped connection or a lagging reader may have lost notices — and forgets
//! entries whose tokens have expired.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::app::App;
use crate::http::auth::unix_now;
use crate::revocation::notice::Notice;
use crate::revocation::store;

/// How often a failed subscribe or reload is retried, and expired entries are looked for.
const TICK: Duration = Duration::from_secs(1);

/// Expired entries are forgotten this often (a pass walks the whole denylist).
const FORGET_EVERY_TICKS: u32 = 10;

/// Runs until `stop` turns true (or its sender is gone).
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    if !app.revocation.is_on() {
        return;
    }
    let subscriber = loop {
        match connect(&app).await {
            Ok(subscriber) => break subscriber,
            Err(err) => {
                tracing::warn!(error = %err, "revocation subscriber cannot connect; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    listen(&app, &subscriber, &mut stop).await;
    let _ = subscriber.quit().await;
}

/// A subscriber client, connected (its first connection counts as a reconnect event too).
async fn connect(app: &App) -> Result<SubscriberClient, fred::error::Error> {
    let mut builder = app.settings.redis.builder()?;
    // Named after the client, so that an operator (or a test) finds it in `CLIENT LIST`.
    builder.with_connection_config(|c| c.auto_client_setname = true);
    let subscriber = builder.build_subscriber_client()?;
    subscriber.init().await?;
    app.revocation.set_subscriber_name(subscriber.id());
    Ok(subscriber)
}

async fn listen(app: &App, subscriber: &SubscriberClient, stop: &mut watch::Receiver<bool>) {
    let revocation = &app.revocation;
    let counters = &app.metrics.revocation;
    let channel = revocation.keys.channel.as_str();
    let mut reconnects = subscriber.reconnect_rx();
    let mut messages = subscriber.message_rx();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Connected already: subscribe, then read back what may have been announced before.
    let (mut subscribed, mut reloaded) = (false, false);
    let mut ticks = 0u32;
    loop {
        if !subscribed {
            match subscriber.subscribe(channel).await {
                Ok(()) => subscribed = true,
                Err(err) => tracing::warn!(error = %err, "revocation subscribe failed; retrying"),
            }
        }
        // Only once subscribed: a notice sent during the reload is then heard, not lost.
        if subscribed && !reloaded {
            match store::reload(&app.redis, revocation, unix_now()).await {
                Ok(entries) => {
                    reloaded = true;
                    counters.reloaded(entries);
                    tracing::info!(entries, "revocations loaded");
                }
                Err(err) => tracing::warn!(error = %err, "reading revocations failed; retrying"),
            }
        }
        tokio::select! {
            event = reconnects.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    counters.reconnected();
                    (subscribed, reloaded) = (false, false);
                }
                Err(RecvError::Closed) => return,
            },
            message = messages.recv() => match message {
                Ok(message) => {
                    if let Some(notice) = message.value.as_string().as_deref().and_then(Notice::parse) {
                        counters.notice();
                        revocation.apply(notice);
                    }
                }
                // Notices were dropped: read them all back.
                Err(RecvError::Lagged(_)) => reloaded = false,
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(FORGET_EVERY_TICKS) {
                    revocation.denylist.forget_expired(unix_now());
                }
                let (tokens, users) = revocation.denylist.len();
                counters.set_held(tokens + users);
            }
            _ = stop.changed() => return,
        }
    }
}
