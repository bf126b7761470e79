//! The consume loop: a batch from the orders, coupons and points topics is written
//! ([`crate::write`]: decode → persist → settle caches → publish), then its offsets are
//! committed, then it is counted. Offsets are committed only after the transaction, the point
//! caches, every dead-letter, compensation and lifecycle message, and the forgetting of ended
//! orders in Redis are safely done.
//!
//! Every [`TICK_EVERY`], between batches or while no message comes, the loop decides the
//! admissions whose wait for units is over ([`BatchWriter::tick`]): a sale whose last message
//! has arrived still has its refusals stored and announced on time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use flashgate_config::Settings;
use flashgate_config::consume::{Next, commit, next_batch, next_offsets};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset};
use sqlx::MySqlPool;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::orders::OrderRecords;
use crate::parked;
use crate::points::PointCaches;
use crate::publish::Publisher;
use crate::write::BatchWriter;

/// How often the consumer lag and the parked events are looked at between batches.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// How often the admissions parked longer than `persister.refused_admission_wait_ms` are
/// looked for, busy or idle: how late, at most, one is rejected after its wait.
const TICK_EVERY: Duration = Duration::from_secs(1);

/// Kafka's time of the oldest message of `batch`, in ms since the Unix epoch (now when no
/// message carries one, so a broker without timestamps shows no lag rather than decades).
fn oldest_timestamp(batch: &[OwnedMessage]) -> u64 {
    batch
        .iter()
        .filter_map(|message| message.timestamp().to_millis())
        .filter_map(|ms| u64::try_from(ms).ok())
        .filter(|&ms| ms > 0)
        .min()
        .unwrap_or_else(crate::metrics::now_ms)
}

/// The persister's moving parts.
pub struct Persister {
    /// Most messages per batch.
    batch_size: usize,
    /// How long a batch waits to fill up after its first message.
    max_wait: Duration,
    /// This instance's member of the consumer group; offsets are committed through it.
    consumer: StreamConsumer,
    /// Where a batch goes between receiving and committing.
    writer: BatchWriter,
    /// Shared with `/metrics`; a batch is counted once its offsets are committed.
    metrics: Arc<Metrics>,
}

impl Persister {
    /// Connects to Redis (the point caches, the sales' order records), creates the consumer
    /// (subscribed to the orders, coupons and points topics) and the producer for dead
    /// letters, compensation and lifecycle events.
    pub async fn new(
        settings: Settings,
        db: MySqlPool,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let redis = settings
            .redis
            .connect_pool()
            .await
            .context("connecting to Redis")?;
        let caches = PointCaches::new(redis.clone(), &settings.redis.key_prefix)
            .with_cache_ttl(settings.points.cache_ttl_secs);
        let records = OrderRecords::new(redis, &settings.redis.key_prefix);
        let consumer: StreamConsumer = settings
            .kafka
            .consumer_config(&settings.kafka.consumer_group)
            .create()
            .context("creating the Kafka consumer")?;
        consumer
            .subscribe(&[
                &settings.kafka.orders_topic,
                &settings.kafka.coupons_topic,
                &settings.kafka.points_topic,
            ])
            .context("subscribing to the orders, coupons and points topics")?;
        let producer: FutureProducer = settings
            .kafka
            .producer_config()
            .create()
            .context("creating the Kafka producer")?;
        Ok(Self {
            batch_size: settings.persister.batch_size,
            max_wait: settings.persister.max_wait(),
            consumer,
            writer: BatchWriter {
                db,
                earning: settings.points.clone(),
                caches,
                publisher: Publisher::new(producer, &settings.kafka),
                records,
                metrics: metrics.clone(),
                wait: settings.persister.refused_admission_wait(),
            },
            metrics,
        })
    }

    /// Consumes until `shutdown` turns true; the batch in hand is finished and committed first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut gauges_read = Instant::now();
        let mut tick_due = tokio::time::Instant::now();
        self.update_parked().await;
        loop {
            let next = next_batch(
                &self.consumer,
                &mut shutdown,
                Some(tick_due),
                self.batch_size,
                self.max_wait,
            );
            match next.await {
                Next::Stop => break,
                // Nothing came for a tick: nothing is held, the persister is not behind.
                Next::Tick => self.metrics.oldest_held_ms.store(0, Ordering::Relaxed),
                Next::Batch(batch) => {
                    Metrics::add(&self.metrics.consumed, batch.len() as u64);
                    self.metrics
                        .oldest_held_ms
                        .store(oldest_timestamp(&batch), Ordering::Relaxed);
                    let Some(counts) = self.writer.write(&batch, &mut shutdown).await else {
                        break; // shutdown while retrying: nothing committed, the batch comes again
                    };
                    commit(&self.consumer, &next_offsets(&batch), CommitMode::Sync);
                    self.metrics.count(&counts);
                    if counts.moved_parked_events() {
                        self.update_parked().await;
                    }
                    if gauges_read.elapsed() > GAUGES_EVERY {
                        gauges_read = Instant::now();
                        self.update_lag();
                        self.update_parked().await;
                    }
                }
            }
            if tokio::time::Instant::now() >= tick_due {
                tick_due = tokio::time::Instant::now() + TICK_EVERY;
                let counts = self.writer.tick().await;
                self.metrics.count(&counts);
                if counts.moved_parked_events() {
                    self.update_parked().await;
                }
            }
        }
        tracing::info!("persister stopped consuming");
        Ok(())
    }

    /// Messages between the consumer's position and the end of each assigned partition.
    fn update_lag(&self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut lag = 0u64;
        for element in positions.elements() {
            let Ok((_, high)) = tokio::task::block_in_place(|| {
                self.consumer.fetch_watermarks(
                    element.topic(),
                    element.partition(),
                    Duration::from_secs(1),
                )
            }) else {
                continue;
            };
            if let Offset::Offset(position) = element.offset() {
                lag += u64::try_from(high - position).unwrap_or(0);
            }
        }
        self.metrics.lag.store(lag, Ordering::Relaxed);
    }

    /// Reads how many events are parked, and how long the oldest has waited, into the gauges
    /// (the table is shared by every persister instance, so it is counted, not tracked).
    async fn update_parked(&self) {
        match parked::waiting(&self.writer.db).await {
            Ok((events, oldest)) => {
                self.metrics.parked.store(events, Ordering::Relaxed);
                self.metrics
                    .parked_oldest_seconds
                    .store(oldest, Ordering::Relaxed);
            }
            Err(err) => tracing::warn!(error = %err, "counting parked events failed"),
        }
    }
}
