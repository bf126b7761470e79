//! The consumer: its own group (`notifier.consumer_group`) on the lifecycle, compensation and
//! coupon topics. For a batch of events, the deliveries their routes ask for are recorded in
//! `notification_deliveries` in one transaction (a redelivered event finds its rows and
//! records nothing; an email to a user without an address is skipped and counted); then the
//! offsets are committed; then the new deliveries are offered to their endpoints, which never
//! makes the consumer wait. Nothing is committed before its rows exist, so nothing is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flashgate_config::consume::{Next, commit, next_batch, next_offsets};
use flashgate_config::{Channel, Settings};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use sqlx::MySqlPool;
use tokio::sync::watch;

use crate::dispatch::Dispatcher;
use crate::event::{self, Event};
use crate::metrics::Metrics;
use crate::store::{self, Delivery, Recorded};

/// Most messages taken in one batch.
const BATCH_SIZE: usize = 256;

/// How long a batch waits to fill up after its first message.
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// The consumer and where its deliveries go.
pub struct Intake {
    /// This instance's member of the consumer group; offsets are committed through it.
    consumer: StreamConsumer,
    db: MySqlPool,
    /// Event type → channels.
    routes: BTreeMap<String, Vec<Channel>>,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<Metrics>,
}

/// The topics consumed: `notifier.topics`, or the lifecycle, compensation and coupon topics.
pub fn topics(settings: &Settings) -> Vec<String> {
    if settings.notifier.topics.is_empty() {
        let kafka = &settings.kafka;
        vec![
            kafka.order_events_topic.clone(),
            kafka.compensations_topic.clone(),
            kafka.coupons_topic.clone(),
        ]
    } else {
        settings.notifier.topics.clone()
    }
}

impl Intake {
    /// Creates the consumer, subscribed to [`topics`].
    pub fn new(
        settings: &Settings,
        db: MySqlPool,
        dispatcher: Arc<Dispatcher>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = settings
            .kafka
            .consumer_config(&settings.notifier.consumer_group)
            .create()
            .context("creating the Kafka consumer")?;
        let topics = topics(settings);
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .context("subscribing to the notifier's topics")?;
        Ok(Self {
            consumer,
            db,
            routes: settings.notifier.channels(),
            dispatcher,
            metrics,
        })
    }

    /// Consumes until `shutdown` turns true; the batch in hand is recorded and committed first
    /// unless shutdown comes while it is being retried (then it comes again).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        loop {
            let Next::Batch(batch) =
                next_batch(&self.consumer, &mut shutdown, None, BATCH_SIZE, BATCH_WAIT).await
            else {
                break;
            };
            self.metrics
                .consumed
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let mut attempt = 0u32;
            let new = loop {
                match self.record(&batch).await {
                    Ok(new) => break new,
                    Err(err) => {
                        Metrics::inc(&self.metrics.mysql_errors);
                        tracing::warn!(
                            error = format!("{err:#}"),
                            attempt,
                            "recording deliveries failed; retrying"
                        );
                        let delay = Duration::from_millis(100u64 << attempt.min(6));
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = shutdown.changed() => return Ok(()),
                        }
                        attempt += 1;
                    }
                }
            };
            commit(&self.consumer, &next_offsets(&batch), CommitMode::Sync);
            for delivery in new {
                self.dispatcher.offer(delivery);
            }
        }
        tracing::info!("notifier stopped consuming");
        Ok(())
    }

    /// Records the deliveries of `batch` in one transaction; returns those to make now.
    async fn record(&self, batch: &[OwnedMessage]) -> anyhow::Result<Vec<Delivery>> {
        let mut tx = self.db.begin().await?;
        let mut new = Vec::new();
        let mut counted: Vec<(String, &'static str)> = Vec::new();
        for message in batch {
            let payload = message.payload().unwrap_or_default();
            let event = match Event::parse(payload) {
                Ok(event) => event,
                Err(why) => {
                    Metrics::inc(&self.metrics.undecodable);
                    tracing::debug!(
                        topic = message.topic(),
                        offset = message.offset(),
                        why,
                        "not an event; skipped"
                    );
                    continue;
                }
            };
            let Some(channels) = self.routes.get(&event.kind) else {
                continue;
            };
            let replay = event::replay_of(message);
            for channel in channels {
                let (name, target) = match channel {
                    Channel::Webhook(endpoint) => ("webhook", endpoint.clone()),
                    Channel::Slack(endpoint) => ("slack", endpoint.clone()),
                    Channel::Email => {
                        let address = match event.user_id() {
                            Some(user) => store::contact(&mut tx, user).await?,
                            None => None,
                        };
                        let Some(address) = address else {
                            counted.push(("email".to_owned(), "skipped_no_address"));
                            continue;
                        };
                        ("email", address)
                    }
                };
                let mut delivery = Delivery {
                    id: 0,
                    event_id: event.event_id.clone(),
                    event_type: event.kind.clone(),
                    channel: name.to_owned(),
                    target,
                    attempts: 0,
                    source_topic: message.topic().to_owned(),
                    source_partition: message.partition(),
                    source_offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: payload.to_vec(),
                };
                match store::record(&mut tx, &delivery, replay.as_deref()).await? {
                    Recorded::New(id) => {
                        delivery.id = id;
                        new.push(delivery);
                    }
                    Recorded::Revived(id) => {
                        delivery.id = id;
                        counted.push((name.to_owned(), "revived"));
                        new.push(delivery);
                    }
                    Recorded::Found => counted.push((name.to_owned(), "duplicate")),
                }
            }
        }
        tx.commit().await.context("committing deliveries")?;
        for (channel, outcome) in counted {
            if outcome == "revived" {
                Metrics::inc(&self.metrics.revived);
            }
            self.metrics.delivery(&channel, outcome);
        }
        Ok(new)
    }
}
