//! The consume loop: a batch from the orders, coupons and points topics is written
//! ([`crate::write`]: decode → persist → settle caches → publish), then its offsets are
//! committed, then it is counted. Offsets are committed only after the transaction, the point
//! caches, every dead-letter, compensation and lifecycle message, and the forgetting of ended
//! orders in Redis are safely done.
//!
//! Every [`TICK_EVERY`], between batches or while no message comes, the loop decides the
//! admissions whose wait for units is over ([`BatchWriter::tick`]): a sale whose last message
//! has arrived still has its refusals stored and announced on time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use flashgate_config::Settings;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
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

/// What the consumer does next.
enum Next {
    /// Write this batch.
    Batch(Vec<OwnedMessage>),
    /// No message came before the tick was due.
    Tick,
    /// Shutdown was asked for.
    Stop,
}

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
            match self.receive(&mut shutdown, tick_due).await {
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
                    self.commit(&batch);
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

    /// The next batch: the first message that arrives, and those that follow it within
    /// `max_wait`, up to `batch_size`; [`Next::Tick`] when none came before `tick_due`;
    /// [`Next::Stop`] once `shutdown` turns true.
    async fn receive(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        tick_due: tokio::time::Instant,
    ) -> Next {
        let first = loop {
            let received = tokio::select! {
                received = self.consumer.recv() => received,
                _ = shutdown.changed() => return Next::Stop,
                _ = tokio::time::sleep_until(tick_due) => return Next::Tick,
            };
            match received {
                Ok(message) => break message.detach(),
                Err(err) => {
                    tracing::warn!(error = %err, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let mut batch: Vec<OwnedMessage> = Vec::with_capacity(self.batch_size);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + self.max_wait;
        while batch.len() < self.batch_size {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                Ok(Err(err)) => tracing::warn!(error = %err, "consumer error"),
                Err(_) => break,
            }
        }
        Next::Batch(batch)
    }

    /// Commits the offset after the last message of each partition in the batch.
    fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for message in batch {
            let entry = next
                .entry((message.topic().to_owned(), message.partition()))
                .or_insert(0);
            *entry = (*entry).max(message.offset() + 1);
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
        if let Err(err) = self.consumer.commit(&list, CommitMode::Sync) {
            // After a rebalance the new owner gets these messages again; writes are idempotent.
            tracing::warn!(error = %err, "offset commit failed");
        }
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
