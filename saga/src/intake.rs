//! The intake: a consumer group (`saga.consumer_group`) on the payments topic. A batch of
//! requests is stored in `payments` ([`crate::requests`]) in one transaction, each write
//! idempotent; poison goes to the dead-letter topic with the reason; then the offsets are
//! committed, and the workers are woken. A passing failure (MySQL or the broker unreachable)
//! is retried with backoff, never skipped: nothing is committed before it is stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flashgate_config::Settings;
use flashgate_config::consume::{Next, commit, next_batch, next_offsets};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use sqlx::MySqlPool;
use tokio::sync::{Notify, watch};

use crate::decode::{self, Request};
use crate::handoff::{Handed, Handoff};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::requests::{self, RefundIntake};
use crate::store;

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
    /// Fresh payments straight to idle workers (`None`: the workers claim them).
    handoff: Option<Handoff>,
}

/// A message decoded, with its request and trace id.
type Decoded<'m> = (&'m OwnedMessage, Request, String);

/// One message's work, retried on its own.
#[derive(Clone, Copy)]
enum Single<'a> {
    /// Send it to the dead-letter topic with this reason.
    DeadLetter(&'a OwnedMessage, &'a str),
    /// Store its request alone (dead-lettered if the database refuses it for good).
    Alone(&'a Decoded<'a>),
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
            handoff: None,
        })
    }

    /// Hands fresh payments to this instance's workers through `handoff`.
    pub fn with_handoff(mut self, handoff: Handoff) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// Consumes until `shutdown` turns true; the batch in hand is stored and committed first
    /// (unless shutdown comes while it is being retried: then it is not committed and comes
    /// again).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        // The next offset of every partition stored so far, committed again (and waited
        // for) at the end, so a clean stop leaves nothing to replay.
        let mut stored: HashMap<(String, i32), i64> = HashMap::new();
        loop {
            let Next::Batch(batch) =
                next_batch(&self.consumer, &mut shutdown, None, BATCH_SIZE, BATCH_WAIT).await
            else {
                break;
            };
            Metrics::add(&self.metrics.consumed, batch.len() as u64);
            if !self.store_batch(&batch, &mut shutdown).await {
                break;
            }
            let next = next_offsets(&batch);
            // Not waited for: a blocking commit would hold one of the runtime's threads (a
            // worker's) for a round trip to the broker per batch. Lost commits only replay
            // rows already stored, which the intake finds stored.
            commit(&self.consumer, &next, CommitMode::Async);
            for (partition, offset) in next {
                let entry = stored.entry(partition).or_insert(0);
                *entry = (*entry).max(offset);
            }
        }
        // Only partitions still this member's: another's offsets are its own to commit.
        if let Ok(assigned) = self.consumer.assignment() {
            stored.retain(|(topic, partition), _| {
                assigned.find_partition(topic, *partition).is_some()
            });
        }
        if !stored.is_empty() {
            commit(&self.consumer, &stored, CommitMode::Sync);
        }
        tracing::info!("saga stopped consuming");
        Ok(())
    }

    /// Stores a batch: poison dead-lettered, the requests written in one transaction (one
    /// flush to disk for the batch); when the database refuses one of them for good, each is
    /// written alone and the one it refuses dead-lettered. Passing failures are retried with
    /// backoff; `false` when shutdown came first.
    async fn store_batch(
        &self,
        batch: &[OwnedMessage],
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut requests = Vec::with_capacity(batch.len());
        for message in batch {
            match decode::request(message.payload()) {
                Ok((request, trace_id)) => requests.push((message, request, trace_id)),
                Err(reason) => {
                    let sent = self
                        .retrying(shutdown, Single::DeadLetter(message, &reason))
                        .await;
                    if !sent {
                        return false;
                    }
                }
            }
        }
        if requests.is_empty() {
            return true;
        }
        let mut attempt = 0;
        loop {
            match self.apply(&requests).await {
                Ok(()) => return true,
                Err(Failure::Refused(_)) => break,
                Err(Failure::Passing(err)) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        attempt,
                        "storing payment requests failed; retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(backoff(attempt)) => {}
                        _ = shutdown.changed() => return false,
                    }
                    attempt += 1;
                }
            }
        }
        // One of them is refused for good: each alone, the refused one dead-lettered.
        for one in &requests {
            let stored = self.retrying(shutdown, Single::Alone(one)).await;
            if !stored {
                return false;
            }
        }
        true
    }

    /// Does `single` until it succeeds (`true`) or shutdown comes first (`false`), with
    /// backoff.
    async fn retrying(&self, shutdown: &mut watch::Receiver<bool>, single: Single<'_>) -> bool {
        let mut attempt = 0;
        loop {
            let done = match single {
                Single::DeadLetter(message, reason) => self.dead_letter(message, reason).await,
                Single::Alone(one) => match self.apply(std::slice::from_ref(one)).await {
                    Ok(()) => Ok(()),
                    Err(Failure::Refused(reason)) => {
                        let reason = format!("the database refuses it: {reason}");
                        self.dead_letter(one.0, &reason).await
                    }
                    Err(Failure::Passing(err)) => Err(err),
                },
            };
            let Err(err) = done else {
                return true;
            };
            tracing::warn!(
                error = format!("{err:#}"),
                attempt,
                "storing a payment request failed; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(backoff(attempt)) => {}
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

    /// Writes what `requests` ask for, in one transaction; the fresh payments it can, leased
    /// in that transaction and handed to the workers after it commits; the workers are woken
    /// for the rest.
    async fn apply(&self, requests: &[Decoded<'_>]) -> Result<(), Failure> {
        let written = async {
            let mut tx = self.db.begin().await?;
            let (mut stored, mut duplicates) = (0, 0);
            let mut fresh = Vec::new();
            for (_, request, trace_id) in requests {
                let new = match request {
                    Request::Payment(payment) => {
                        let new = requests::store_payment(&mut tx, payment, trace_id).await?;
                        if new {
                            fresh.push(payment.order_id.as_str());
                        }
                        new
                    }
                    Request::Refund(refund) => {
                        requests::store_refund(&mut tx, refund, trace_id).await?
                            != RefundIntake::Duplicate
                    }
                };
                if new { stored += 1 } else { duplicates += 1 }
            }
            let reserved = self
                .handoff
                .as_ref()
                .and_then(|h| Some((h.reserve(fresh.len())?, h.lease)));
            let mut handed = Vec::new();
            let mut permits = None;
            if let Some(((reserved, owner), lease)) = reserved {
                let room = reserved.len();
                let claims = store::lease_fresh(&mut tx, &owner, lease, &fresh[..room]).await?;
                handed = claims
                    .into_iter()
                    .map(|claim| Handed {
                        owner: owner.clone(),
                        claim,
                    })
                    .collect();
                permits = Some(reserved);
            }
            tx.commit().await?;
            let n = handed.len() as u64;
            if let Some(permits) = permits {
                for (permit, one) in permits.zip(handed) {
                    permit.send(one);
                }
            }
            Ok::<_, sqlx::Error>((stored, duplicates, n))
        };
        match written.await {
            Ok((stored, duplicates, handed)) => {
                Metrics::add(&self.metrics.requests_stored, stored);
                Metrics::add(&self.metrics.duplicates, duplicates);
                Metrics::add(&self.metrics.handed_off, handed);
                if stored > handed {
                    self.wake.notify_one();
                }
                Ok(())
            }
            Err(err) => {
                Metrics::inc(&self.metrics.mysql_errors);
                Err(match flashgate_persister::failure::deterministic(&err) {
                    Some(reason) => Failure::Refused(reason),
                    None => Failure::Passing(
                        anyhow::Error::new(err).context("storing payment requests"),
                    ),
                })
            }
        }
    }
}
