//! One delivery to its end: attempts under the lease, each outcome written down (retried
//! while MySQL is away), a backoff between attempts, and the dead letter when they run out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::OwnedSemaphorePermit;

use super::Dispatcher;
use super::endpoint::{Endpoint, lock};
use super::send::Envelope;
use crate::breaker;
use crate::metrics::Metrics;
use crate::store::{self, Delivery};

impl Dispatcher {
    /// One delivery to its end (sent, dead) or until shutdown; `_held` is its place in the
    /// endpoint's queue, given back at the end.
    pub(super) async fn work(
        self: Arc<Self>,
        endpoint: Arc<Endpoint>,
        mut delivery: Delivery,
        _held: OwnedSemaphorePermit,
    ) {
        let mut stop = self.stop.clone();
        let mut envelope = Envelope::default();
        loop {
            // Each attempt under this instance's lease: a row read by the sweep (or
            // recorded by the intake) just before another worker, here or in another
            // instance, sent it — or while it has it in hand — is not sent twice.
            if !self.leased(&delivery).await {
                break;
            }
            let outcome = endpoint
                .attempt(&self.sender, &delivery, &mut envelope, &self.metrics)
                .await;
            delivery.attempts += 1;
            let channel = delivery.channel.clone();
            match outcome {
                Ok(()) => {
                    self.write(|| store::sent(&self.db, delivery.id, delivery.attempts))
                        .await;
                    self.metrics.delivery(&channel, "sent");
                    tracing::debug!(
                        event_id = delivery.event_id,
                        channel,
                        attempts = delivery.attempts,
                        "delivery sent"
                    );
                    break;
                }
                Err(reason) if delivery.attempts >= self.max_attempts => {
                    let reason = format!(
                        "{} delivery to {} failed {} times; last: {reason}",
                        delivery.channel, delivery.target, delivery.attempts
                    );
                    if !self.dead_letter(&delivery, &reason).await {
                        break;
                    }
                    self.write(|| store::dead(&self.db, delivery.id, delivery.attempts, &reason))
                        .await;
                    self.metrics.delivery(&channel, "dead");
                    tracing::warn!(
                        event_id = delivery.event_id,
                        channel,
                        target = delivery.target,
                        reason,
                        "delivery dead-lettered"
                    );
                    break;
                }
                Err(reason) => {
                    let delay = self.backoff.delay(delivery.attempts, breaker::random());
                    let next_at = Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                    let attempts = delivery.attempts;
                    self.write(|| {
                        store::failed(
                            &self.db,
                            delivery.id,
                            attempts,
                            &reason,
                            next_at,
                            self.lease,
                        )
                    })
                    .await;
                    self.metrics.delivery(&channel, "retried");
                    tracing::debug!(
                        event_id = delivery.event_id,
                        channel,
                        reason,
                        "attempt failed"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        lock(&self.in_hand).remove(&delivery.id);
        drop(_held);
        endpoint.show_held(&self.metrics);
    }

    /// Sends the letter, retried until the broker takes it; `false` when shutdown came first
    /// (the row stays pending and comes back after the restart).
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> bool {
        let mut stop = self.stop.clone();
        let mut attempt = 0;
        loop {
            match self.dead_letters.send(delivery, reason).await {
                Ok(()) => return true,
                Err(err) => {
                    Metrics::inc(&self.metrics.kafka_errors);
                    tracing::warn!(error = %err, "dead-lettering a delivery failed; retrying");
                }
            }
            attempt += 1;
            tokio::select! {
                () = tokio::time::sleep(self.backoff.delay(attempt, breaker::random())) => {}
                _ = stop.changed() => return false,
            }
        }
    }

    /// Writes a row's change, retried while MySQL is away (at most a minute: then the row
    /// keeps its older state, and the sweep or a restart picks it up again).
    async fn write<'a, F, Fut>(&'a self, change: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = sqlx::Result<()>> + 'a,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0;
        loop {
            let Err(err) = change().await else {
                return;
            };
            Metrics::inc(&self.metrics.mysql_errors);
            tracing::warn!(error = %err, "writing a delivery's outcome failed");
            attempt += 1;
            if Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100u64 << attempt.min(5))).await;
        }
    }
}
