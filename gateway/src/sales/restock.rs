//! Listens on the restock channel and clears sold-out marks when a sale gets stock back.

use std::sync::Arc;

use flashgate_config::RedisSettings;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};

use crate::app::App;
use crate::keys;

/// Subscribes to `<prefix>:restock`; each message is a sale id whose mark is cleared. The
/// subscription is renewed after a reconnect. Runs until aborted.
pub async fn listen(settings: RedisSettings, app: Arc<App>) {
    let subscriber = match settings.builder().and_then(|b| b.build_subscriber_client()) {
        Ok(subscriber) => subscriber,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the restock subscriber");
            return;
        }
    };
    let _connection = subscriber.init().await;
    let _resubscribe = subscriber.manage_subscriptions();
    let mut messages = subscriber.message_rx();
    let channel = keys::restock_channel(&settings.key_prefix);
    if let Err(err) = subscriber.subscribe(channel.as_str()).await {
        tracing::warn!(error = %err, "restock subscription failed; sold-out marks expire by TTL only");
    }
    while let Ok(message) = messages.recv().await {
        if let Some(sale_id) = message
            .value
            .as_string()
            .and_then(|s| s.parse::<u64>().ok())
        {
            app.sold_out.clear(sale_id);
        }
    }
}
