//! Announcing final payments' outcomes off the workers' slots: a worker whose payment's final
//! row is written hands it to a bounded queue and is free at once; one task sends each queued
//! outcome to Kafka at once (librdkafka batches the sends in flight into produce requests)
//! and records the acknowledged ones announced together, in one transaction.
//!
//! The guarantee is the one of the inline announcement it replaces: an outcome is announced
//! at least once, after its final row is written, and recorded announced only after the
//! broker acknowledged it. A payment stays leased to the worker's claim while it waits here;
//! a failed send is written as a retry (backoff, lease let go), so the claim loop takes it
//! again and announces it then; a crash, or a wait past the lease, leaves the row unannounced
//! for whoever claims it next. Every write is fenced like the worker's own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::backoff::{self, Backoff};
use crate::metrics::Metrics;
use crate::payment::Payment;
use crate::publish::Publisher;
use crate::steps;
use crate::store::{Next, Store, Write};

/// Most outcomes recorded in one transaction.
const BATCH: usize = 256;

/// Most outcomes sent and not yet recorded.
const IN_FLIGHT: usize = 512;

/// How long the queue may take to empty at shutdown; what is left waits for its lease.
const DRAIN: Duration = Duration::from_secs(5);

/// A final payment to announce, as its claim last wrote it.
#[derive(Debug)]
pub struct Announcement {
    /// The claim (lease owner) it was written under.
    pub owner: String,
    /// The row as written: final, not announced.
    pub payment: Payment,
    /// The database's clock at the claim, and this process's when it was read (retries are
    /// put off by the database's clock, like the worker's).
    pub claimed_at: DateTime<Utc>,
    /// See `claimed_at`.
    pub claimed: Instant,
}

impl Announcement {
    /// The database's clock now, estimated from the claim.
    fn now(&self) -> DateTime<Utc> {
        self.claimed_at
            + chrono::Duration::from_std(self.claimed.elapsed()).unwrap_or(chrono::Duration::zero())
    }
}

/// The workers' end of the queue.
#[derive(Clone)]
pub struct Announcer {
    /// Bounded: when the broker falls behind, workers wait here (backpressure) instead of the
    /// queue growing without end.
    queue: mpsc::Sender<Announcement>,
}

impl Announcer {
    /// Queues `announcement`, waiting while the queue is full; gives it back when the
    /// announcing task is gone (shutdown: the caller lets the payment go).
    pub async fn submit(&self, announcement: Announcement) -> Result<(), Announcement> {
        self.queue.send(announcement).await.map_err(|err| err.0)
    }
}

/// The task that sends what is queued.
pub struct Announcing {
    queue: mpsc::Receiver<Announcement>,
    inner: Arc<Inner>,
}

/// What sending and recording need, shared by the sends in flight and the recorder.
struct Inner {
    publisher: Publisher,
    store: Store,
    metrics: Arc<Metrics>,
    backoff: Backoff,
}

/// An announcement sent (or not), waiting to be recorded; its place among the sends in
/// flight is given back once it is.
type Sent = (
    Announcement,
    anyhow::Result<()>,
    Option<OwnedSemaphorePermit>,
);

/// A queue of `capacity` outcomes: the workers' end, and the task that announces them.
pub fn queue(
    capacity: usize,
    publisher: Publisher,
    store: Store,
    metrics: Arc<Metrics>,
    backoff: Backoff,
) -> (Announcer, Announcing) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (
        Announcer { queue: sender },
        Announcing {
            queue: receiver,
            inner: Arc::new(Inner {
                publisher,
                store,
                metrics,
                backoff,
            }),
        },
    )
}

impl Announcing {
    /// Announces until `shutdown` turns true, then closes the queue (later submits are
    /// refused) and announces what it holds for up to [`DRAIN`].
    ///
    /// Each outcome is sent as soon as it is queued (at most [`IN_FLIGHT`] at once: a slow
    /// broker holds the queue back, and the queue the workers), and those acknowledged
    /// meanwhile are recorded together, one commit for all.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        let (sent, mut to_record) = mpsc::unbounded_channel::<Sent>();
        let recorder = self.inner.clone();
        let recording = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while to_record.recv_many(&mut batch, BATCH).await > 0 {
                recorder.record(std::mem::take(&mut batch)).await;
            }
        });
        loop {
            let one = tokio::select! {
                one = self.queue.recv() => one,
                _ = shutdown.changed() => None,
            };
            let Some(one) = one else { break };
            self.send(one, &in_flight, &sent).await;
        }
        self.queue.close();
        let drained = async {
            while let Some(one) = self.queue.recv().await {
                self.send(one, &in_flight, &sent).await;
            }
            drop(sent);
            let _ = recording.await;
        };
        if tokio::time::timeout(DRAIN, drained).await.is_err() {
            tracing::warn!("outcomes still queued at shutdown are announced after their leases");
        }
    }

    /// Sends `one` in a task of its own once a place among the sends in flight is free; the
    /// result goes to the recorder.
    async fn send(
        &self,
        one: Announcement,
        in_flight: &Arc<Semaphore>,
        sent: &mpsc::UnboundedSender<Sent>,
    ) {
        let Ok(place) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (inner, sent) = (self.inner.clone(), sent.clone());
        tokio::spawn(async move {
            let result = inner.send(&one.payment).await;
            let _ = sent.send((one, result, Some(place)));
        });
    }

    /// Sends `batch` at once, then records the acknowledged ones announced in one
    /// transaction and the failed ones as retries.
    pub async fn announce(&self, batch: Vec<Announcement>) {
        let mut sends = JoinSet::new();
        for one in batch {
            let inner = self.inner.clone();
            sends.spawn(async move {
                let result = inner.send(&one.payment).await;
                (one, result, None)
            });
        }
        let mut sent = Vec::with_capacity(sends.len());
        while let Some(joined) = sends.join_next().await {
            if let Ok(one) = joined {
                sent.push(one);
            }
        }
        self.inner.record(sent).await;
    }
}

impl Inner {
    /// Sends `payment`'s outcome and waits for the broker.
    async fn send(&self, payment: &Payment) -> anyhow::Result<()> {
        match steps::outcome_kind(payment.status) {
            Some(kind) => self.publisher.announce(payment, kind).await,
            // Not final: nothing to announce (the worker queues only final rows).
            None => Ok(()),
        }
    }

    /// Records `sent` in one transaction: announced (nothing left to do, lease let go), or
    /// for a failed send put off with a backoff (lease let go: the claim takes it again).
    async fn record(&self, sent: Vec<Sent>) {
        let mut writes = Vec::with_capacity(sent.len());
        for (one, result, _) in &sent {
            let (after, next) = match result {
                Ok(()) => {
                    Metrics::inc(&self.metrics.announced);
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        // In the payment's span, as its steps are (`trace.rs`).
                        crate::trace::payment_span(&one.payment).in_scope(|| {
                            tracing::debug!(
                                status = one.payment.status.as_str(),
                                "payment outcome announced"
                            );
                        });
                    }
                    (steps::announced(&one.payment).payment, Next::Never)
                }
                Err(err) => {
                    Metrics::inc(&self.metrics.kafka_errors);
                    Metrics::inc(&self.metrics.retries);
                    let _span = crate::trace::payment_span(&one.payment).entered();
                    tracing::warn!(
                        order_id = one.payment.order_id,
                        error = format!("{err:#}"),
                        "announcing a payment's outcome failed; retrying"
                    );
                    let after = steps::retry(&one.payment).payment;
                    let delay = self
                        .backoff
                        .delay(after.retries.saturating_sub(1), backoff::random());
                    let at = backoff::retry_at(one.now(), delay, after.give_up_at, false);
                    (after, Next::At(at))
                }
            };
            writes.push(Write {
                owner: &one.owner,
                before: &one.payment,
                after,
                next,
            });
        }
        match self.store.save_many(&writes).await {
            Ok(written) => {
                let lost = written.iter().filter(|w| !**w).count();
                if lost > 0 {
                    // Taken over after the lease: its new holder announces it again.
                    Metrics::add(&self.metrics.leases_lost, lost as u64);
                }
            }
            Err(err) => {
                // Unrecorded: the rows stay unannounced and are announced again once their
                // leases run out (at least once; the event id lets downstream dedupe).
                Metrics::inc(&self.metrics.mysql_errors);
                tracing::warn!(error = %err, "recording outcomes announced failed");
            }
        }
    }
}
