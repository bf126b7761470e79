//! The work: claim due payments under a lease ([`crate::store`]), work each one in a task of
//! its own through its steps ([`crate::steps`]) until it is done or put off, at most
//! `saga.concurrency` at once (so at most that many provider calls in flight).
//!
//! Every step is written before the next begins: the charge key before the charge call, the
//! charge after it, each Redis step's result after it. Each write is fenced by the lease and
//! by the row as this instance last wrote it (status, refund cause): when another instance
//! took the payment over (its lease ran out) or the intake changed it (a refund asked), the
//! write changes nothing and this instance lets the payment go. A crash anywhere leaves a row
//! whose next step is safe to run again by whoever claims it after the lease.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::announce::Announcer;
use crate::backoff::Backoff;
use crate::handoff::Handed;
use crate::metrics::Metrics;
use crate::orders::Orders;
use crate::provider::Provider;
use crate::store::{Claimed, Store};

/// Why a payment's work stopped before it was done or put off.
pub(crate) enum Stop {
    /// Another instance took it over, or the intake changed it: let go.
    Lost,
    /// A write failed: let go (if still possible); the lease runs out otherwise.
    Database(sqlx::Error),
    /// Shutdown: let go between steps.
    Shutdown,
}

/// Most payments claimed in one statement.
const CLAIM_AT_ONCE: usize = 100;

/// Everything the work needs; shared by its tasks.
pub struct Worker {
    /// `payments`.
    pub store: Store,
    /// The provider's client.
    pub provider: Provider,
    /// The orders' records in Redis.
    pub orders: Orders,
    /// Outcomes: final rows are queued here and announced off the workers' slots.
    pub announcer: Announcer,
    /// Counted as they happen.
    pub metrics: Arc<Metrics>,
    /// `saga.retry_base_ms`, `saga.retry_cap_ms`.
    pub backoff: Backoff,
    /// Payments worked at once: a bound on provider calls in flight and on this instance's
    /// share of the work (the rest stays claimable by other instances).
    pub concurrency: usize,
    /// How often an idle worker looks for due payments (`saga.poll_interval_ms`).
    pub poll_interval: Duration,
    /// This instance's name in `lease_owner` (each claim adds its own number).
    pub instance: String,
    /// Rung by the intake when it stored work, and by a task that let a payment go.
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Claims and works payments until `shutdown` turns true, then lets the payments in hand
    /// finish their current step and go.
    /// Payments the intake leased for it come through `handed` (`None`: claims only).
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        mut handed: Option<mpsc::Receiver<Handed>>,
    ) {
        let mut tasks = JoinSet::new();
        let mut claims = 0u64;
        // After a full claim, claim again once this many places are free: one claim (a
        // transaction) per finished payment made claiming the bottleneck (64 payments/s
        // measured, against 143/s with a quarter of the places at a time).
        let refill = (self.concurrency / 4).clamp(1, CLAIM_AT_ONCE);
        while !*shutdown.borrow() {
            let free = self.concurrency.saturating_sub(tasks.len());
            let asked = free.min(CLAIM_AT_ONCE);
            // Whether the last claim got all it asked for: more may be due at once.
            let mut full = false;
            if asked > 0 {
                claims += 1;
                let owner = format!("{}#{claims}", self.instance);
                match self.store.claim(&owner, asked).await {
                    Ok(batch) => {
                        full = batch.len() == asked;
                        for claim in batch {
                            let worker = self.clone();
                            let (owner, stop) = (owner.clone(), shutdown.clone());
                            tasks.spawn(async move { worker.work(claim, owner, stop).await });
                        }
                    }
                    Err(err) => {
                        Metrics::inc(&self.metrics.mysql_errors);
                        tracing::warn!(error = %err, "claiming payments failed");
                    }
                }
            }
            if full && tasks.len() < self.concurrency {
                continue;
            }
            // Wait for a reason to claim again: new work stored, the poll interval, enough
            // free places after a full claim, or shutdown. Finished tasks are reaped meanwhile.
            let poll = tokio::time::sleep(self.poll_interval);
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    () = self.wake.notified() => break,
                    one = next_handed(&mut handed), if tasks.len() < self.concurrency => {
                        match one {
                            Some(Handed { owner, claim }) => {
                                let worker = self.clone();
                                let stop = shutdown.clone();
                                tasks.spawn(async move { worker.work(claim, owner, stop).await });
                            }
                            // The intake is gone: claims only.
                            None => handed = None,
                        }
                    }
                    () = &mut poll => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                        if full && self.concurrency - tasks.len() >= refill {
                            break;
                        }
                    }
                    _ = shutdown.changed() => break,
                }
            }
        }
        // Payments handed over but not begun: let go now rather than after their leases.
        if let Some(handed) = handed.as_mut() {
            handed.close();
            while let Ok(Handed { owner, claim }) = handed.try_recv() {
                if let Err(err) = self.store.release(&owner, &claim.payment.order_id).await {
                    Metrics::inc(&self.metrics.mysql_errors);
                    tracing::warn!(error = %err, "letting a handed payment go failed");
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("saga stopped working");
    }

    /// Works one claimed payment until it is done, put off, or let go; its lines carry the
    /// order and the trace id of the request that asked for the payment.
    async fn work(self: Arc<Self>, claim: Claimed, owner: String, shutdown: watch::Receiver<bool>) {
        let span = crate::trace::payment_span(&claim.payment);
        tracing::Instrument::instrument(self.work_traced(claim, owner, shutdown), span).await;
    }

    /// [`Worker::work`], in the payment's span.
    async fn work_traced(
        self: Arc<Self>,
        claim: Claimed,
        owner: String,
        shutdown: watch::Receiver<bool>,
    ) {
        tracing::debug!(
            status = claim.payment.status.as_str(),
            attempts = claim.payment.attempts,
            "payment claimed"
        );
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let order_id = claim.payment.order_id.clone();
        let stop = self.steps(&claim, &owner, &shutdown).await;
        let release = match stop {
            Ok(()) => false,
            Err(Stop::Lost) => {
                Metrics::inc(&self.metrics.leases_lost);
                tracing::info!(order_id, "payment changed under this instance; letting go");
                true
            }
            Err(Stop::Database(err)) => {
                Metrics::inc(&self.metrics.mysql_errors);
                tracing::warn!(order_id, error = %err, "writing a payment step failed; letting go");
                true
            }
            Err(Stop::Shutdown) => true,
        };
        if release {
            if let Err(err) = self.store.release(&owner, &order_id).await {
                // The lease runs out instead.
                Metrics::inc(&self.metrics.mysql_errors);
                tracing::warn!(order_id, error = %err, "letting a payment go failed");
            }
            self.wake.notify_one();
        }
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The next payment the intake handed over; never, when there is no hand-off.
async fn next_handed(handed: &mut Option<mpsc::Receiver<Handed>>) -> Option<Handed> {
    match handed {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
