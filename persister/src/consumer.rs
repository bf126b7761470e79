//! The consume loop: batches from the orders, coupons and points topics, one MySQL
//! transaction per batch, offsets committed only after the transaction (and any dead-letter or
//! compensation message, and the point caches in Redis) is safely written. Transient failures
//! are retried with capped backoff; nothing is skipped. A message the database refuses for
//! good is found by splitting its batch and goes to the dead-letter topic.

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

use crate::batch::{self, Decoded};
use crate::metrics::Metrics;
use crate::points::Caches;
use crate::{failure, parked};

/// The persister's moving parts.
pub struct Persister {
    pub(crate) settings: Settings,
    db: MySqlPool,
    consumer: StreamConsumer,
    pub(crate) producer: FutureProducer,
    pub(crate) caches: Caches,
    pub(crate) metrics: Arc<Metrics>,
}

/// Why writing a batch failed.
enum Failed {
    /// The database refuses it, and would on every retry: `"<number>: <message>"`.
    Refused(String),
    /// Anything else (MySQL, Redis or the broker unreachable, a lock timeout, a deadlock).
    Transient(anyhow::Error),
}

/// Backoff for retries: 100 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

impl Persister {
    /// Connects to Redis (the point caches), creates the consumer (subscribed to the orders,
    /// coupons and points topics) and the producer for dead letters and compensation events.
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
        let caches = Caches::new(redis, &settings.redis.key_prefix);
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
            settings,
            db,
            consumer,
            producer,
            caches,
            metrics,
        })
    }

    /// Consumes until `shutdown` turns true; the batch in hand is finished and committed first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let batch_size = self.settings.persister.batch_size;
        let max_wait = self.settings.persister.max_wait();
        let mut lag_checked = Instant::now();
        self.update_parked().await;
        loop {
            let first = tokio::select! {
                received = self.consumer.recv() => received,
                _ = shutdown.changed() => break,
            };
            let mut batch: Vec<OwnedMessage> = Vec::with_capacity(batch_size);
            match first {
                Ok(message) => batch.push(message.detach()),
                Err(err) => {
                    tracing::warn!(error = %err, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + max_wait;
            while batch.len() < batch_size {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(message)) => batch.push(message.detach()),
                    Ok(Err(err)) => tracing::warn!(error = %err, "consumer error"),
                    Err(_) => break,
                }
            }
            Metrics::add(&self.metrics.consumed, batch.len() as u64);
            if !self.handle(&batch, &mut shutdown).await {
                break; // shutdown while retrying: nothing committed, the batch comes again
            }
            self.commit(&batch);
            if lag_checked.elapsed() > Duration::from_secs(5) {
                lag_checked = Instant::now();
                self.update_lag();
                self.update_parked().await;
            }
        }
        tracing::info!("persister stopped consuming");
        Ok(())
    }

    /// Writes one batch; retries transient failures until it succeeds (true) or shutdown is
    /// asked for (false).
    ///
    /// When the database refuses the batch for good (a constraint, a value that does not fit:
    /// see [`failure`]), the batch is split in halves, each written on its own, until the
    /// message it refuses is alone: that one goes to the dead-letter topic with the server's
    /// reason, and everything else is stored. One bad message never stalls a partition, and
    /// the normal path stays one transaction per batch.
    async fn handle(&self, batch: &[OwnedMessage], shutdown: &mut watch::Receiver<bool>) -> bool {
        // Parts still to write, the next one last.
        let mut parts: Vec<&[OwnedMessage]> = vec![batch];
        while let Some(part) = parts.pop() {
            let mut attempt = 0;
            loop {
                let started = Instant::now();
                let failure = match self.write(part).await {
                    Ok(()) => {
                        Metrics::add(&self.metrics.batches, 1);
                        Metrics::add(&self.metrics.batch_messages, part.len() as u64);
                        Metrics::add(
                            &self.metrics.batch_micros,
                            started.elapsed().as_micros() as u64,
                        );
                        break;
                    }
                    Err(Failed::Refused(reason)) if part.len() == 1 => {
                        let reason = format!("the database refuses it: {reason}");
                        match self.dead_letter(&part[0], &reason).await {
                            Ok(()) => {
                                Metrics::add(&self.metrics.dead_lettered, 1);
                                Metrics::add(&self.metrics.refused_by_database, 1);
                                break;
                            }
                            Err(err) => err,
                        }
                    }
                    Err(Failed::Refused(reason)) => {
                        tracing::warn!(
                            messages = part.len(),
                            reason,
                            "the database refuses a batch; splitting it to find the message"
                        );
                        Metrics::add(&self.metrics.isolated, 1);
                        let (first, second) = part.split_at(part.len() / 2);
                        parts.push(second);
                        parts.push(first);
                        break;
                    }
                    Err(Failed::Transient(err)) => err,
                };
                Metrics::add(&self.metrics.retries, 1);
                let wait = backoff(attempt);
                attempt += 1;
                tracing::warn!(
                    error = format!("{failure:#}"),
                    ?wait,
                    "batch failed; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return false,
                }
            }
        }
        true
    }

    /// Decodes and stores `batch` in one transaction, then announces what it decided.
    async fn write(&self, batch: &[OwnedMessage]) -> Result<(), Failed> {
        let decoded = Decoded::new(batch);
        let written = batch::write(&self.db, &decoded, &self.settings.points)
            .await
            .map_err(|err| match failure::deterministic(&err) {
                Some(reason) => Failed::Refused(reason),
                None => {
                    Failed::Transient(anyhow::Error::new(err).context("writing the batch to MySQL"))
                }
            })?;
        self.announce(&decoded, &written)
            .await
            .map_err(Failed::Transient)?;
        let (coupons, points) = (&written.coupons, &written.points);
        if coupons.parked + coupons.unparked + points.parked + points.unparked > 0 {
            self.update_parked().await;
        }
        Ok(())
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
        match parked::waiting(&self.db).await {
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
