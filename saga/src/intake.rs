//! The intake: a consumer group (`saga.consumer_group`) on the payments topic. A batch of
//! requests is stored in `payments` ([`crate::requests`]), message by message, each write
//! idempotent; poison goes to the dead-letter topic with the reason; then the offsets are
//! committed, and the workers are woken. A passing failure (MySQL or the broker unreachable)
//! is retried with backoff, never skipped: nothing is committed before it is stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flashgate_config::Settings;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::MySqlPool;
use tokio::sync::{Notify, watch};

use crate::decode::{self, Request};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::requests::{self, RefundIntake};

/// Most messages taken in one batch.
const BATCH_SIZE: usize = 256;

/// How long a batch waits to fill up after its first message.
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// Retries of a message that failed for a passing reason: 100 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

/// The consumer and where its requests go.
pub struct Intake {
    /// This instance's member of the consumer group; offsets are committed through it.
    consumer: StreamConsumer,
    /// Where the rows go.
    db: MySqlPool,
    /// Dead letters.
    publisher: Publisher,
    /// Wakes the workers when new work was stored.
    wake: Arc<Notify>,
    /// Counted as they happen.
    metrics: Arc<Metrics>,
}

/// Why storing a message failed.
enum Failure {
    /// The database refuses it and would on every retry: `"<number>: <message>"`.
    Refused(String),
    /// Anything else.
    Passing(anyhow::Error),
}

impl Intake {
    /// Creates the consumer (subscribed to `kafka.payments_topic` in `saga.consumer_group`).
    pub fn new(
        settings: &Settings,
        db: MySqlPool,
        publisher: Publisher,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = settings
            .kafka
            .consumer_config(&settings.saga.consumer_group)
            .create()
            .context("creating the Kafka consumer")?;
        consumer
            .subscribe(&[&settings.kafka.payments_topic])
            .context("subscribing to the payments topic")?;
        Ok(Self {
            consumer,
            db,
            publisher,
            wake,
            metrics,
        })
    }

    /// Consumes until `shutdown` turns true; the batch in hand is stored and committed first
    /// (unless shutdown comes while it is being retried: then it is not committed and comes
    /// again).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        loop {
            let Some(batch) = self.receive(&mut shutdown).await else {
                break;
            };
            Metrics::add(&self.metrics.consumed, batch.len() as u64);
            let mut stored_all = true;
            for message in &batch {
                if !self.store(message, &mut shutdown).await {
                    stored_all = false;
                    break;
                }
            }
            if !stored_all {
                break;
            }
            self.commit(&batch);
            self.wake.notify_one();
        }
        tracing::info!("saga stopped consuming");
        Ok(())
    }

    /// The next batch, or `None` once shutdown is asked for.
    async fn receive(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Vec<OwnedMessage>> {
        let first = loop {
            let received = tokio::select! {
                received = self.consumer.recv() => received,
                _ = shutdown.changed() => return None,
            };
            match received {
                Ok(message) => break message.detach(),
                Err(err) => {
                    tracing::warn!(error = %err, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH_SIZE {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                Ok(Err(err)) => tracing::warn!(error = %err, "consumer error"),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Stores one message (or dead-letters it), retrying passing failures; `false` when
    /// shutdown came first.
    async fn store(&self, message: &OwnedMessage, shutdown: &mut watch::Receiver<bool>) -> bool {
        let decoded = decode::request(message.payload());
        let mut attempt = 0;
        loop {
            let outcome = match &decoded {
                Err(reason) => self.dead_letter(message, reason).await,
                Ok((request, trace_id)) => match self.apply(request, trace_id).await {
                    Ok(()) => Ok(()),
                    Err(Failure::Refused(reason)) => {
                        let reason = format!("the database refuses it: {reason}");
                        self.dead_letter(message, &reason).await
                    }
                    Err(Failure::Passing(err)) => Err(err),
                },
            };
            let Err(err) = outcome else {
                return true;
            };
            tracing::warn!(
                error = format!("{err:#}"),
                attempt,
                "storing a payment request failed; retrying"
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff(attempt)) => {}
                _ = shutdown.changed() => return false,
            }
            attempt += 1;
        }
    }

    async fn dead_letter(&self, message: &OwnedMessage, reason: &str) -> anyhow::Result<()> {
        match self.publisher.dead_letter(message, reason).await {
            Ok(()) => {
                Metrics::inc(&self.metrics.dead_lettered);
                Ok(())
            }
            Err(err) => {
                Metrics::inc(&self.metrics.kafka_errors);
                Err(err)
            }
        }
    }

    /// Writes what `request` asks for.
    async fn apply(&self, request: &Request, trace_id: &str) -> Result<(), Failure> {
        let stored = match request {
            Request::Payment(payment) => requests::store_payment(&self.db, payment, trace_id).await,
            Request::Refund(refund) => requests::store_refund(&self.db, refund, trace_id)
                .await
                .map(|intake| intake != RefundIntake::Duplicate),
        };
        match stored {
            Ok(true) => {
                Metrics::inc(&self.metrics.requests_stored);
                Ok(())
            }
            Ok(false) => {
                Metrics::inc(&self.metrics.duplicates);
                Ok(())
            }
            Err(err) => {
                Metrics::inc(&self.metrics.mysql_errors);
                Err(match flashgate_persister::failure::deterministic(&err) {
                    Some(reason) => Failure::Refused(reason),
                    None => Failure::Passing(anyhow::Error::new(err).context(format!(
                        "storing the request of order {}",
                        request.order_id()
                    ))),
                })
            }
        }
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
            // After a rebalance the new owner gets these messages again; storing is idempotent.
            tracing::warn!(error = %err, "offset commit failed");
        }
    }
}
