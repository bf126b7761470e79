//! The dispatcher: what the deliveries need, taking one in hand when its endpoint has room,
//! and the sweep that finds the ones left waiting in MySQL.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashgate_config::{Channel, NotifierSettings};
use sqlx::MySqlPool;
use tokio::sync::watch;

use super::endpoint::{self, Endpoint, label_of, lock};
use super::lease::{lease_of, owner_id};
use super::send::Sender;
use crate::breaker::Backoff;
use crate::deadletter::DeadLetters;
use crate::metrics::{EndpointLabel, Metrics};
use crate::store::{self, Delivery};

/// Where the deliveries go, and what they need.
pub struct Dispatcher {
    endpoints: BTreeMap<EndpointLabel, Arc<Endpoint>>,
    /// Row ids in hand in this process (never two workers on one delivery).
    pub(super) in_hand: Mutex<HashSet<u64>>,
    pub(super) db: MySqlPool,
    pub(super) dead_letters: DeadLetters,
    pub(super) metrics: Arc<Metrics>,
    pub(super) sender: Sender,
    pub(super) max_attempts: u32,
    pub(super) backoff: Backoff,
    sweep_interval: Duration,
    /// This instance, as the `owner` of the rows it leases (unique per process).
    pub(super) owner: String,
    /// How long a lease lasts: the slowest endpoint's deadline and a margin, renewed before
    /// each attempt, so a lease never lapses while its attempt may still be under way.
    pub(super) lease: Duration,
    /// Turns true at shutdown: deliveries waiting for a retry are let go (their rows keep
    /// the time of the next attempt).
    pub(super) stop: watch::Receiver<bool>,
}

impl Dispatcher {
    /// The endpoints of `settings` (the SMTP one only when a route uses email).
    pub fn new(
        settings: &NotifierSettings,
        db: MySqlPool,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let uses_email = settings
            .channels()
            .values()
            .any(|channels| channels.contains(&Channel::Email));
        let sender = Sender::new(settings, uses_email)?;
        let endpoints = endpoint::table(settings, uses_email, &metrics);
        Ok(Self {
            endpoints,
            in_hand: Mutex::new(HashSet::new()),
            db,
            dead_letters,
            metrics,
            sender,
            max_attempts: settings.max_attempts,
            backoff: Backoff {
                base_ms: settings.retry_base_ms,
                cap_ms: settings.retry_cap_ms,
            },
            sweep_interval: settings.sweep_interval(),
            owner: owner_id(settings.listen),
            lease: lease_of(settings),
            stop,
        })
    }

    /// Deliveries in hand now.
    pub fn in_hand(&self) -> usize {
        lock(&self.in_hand).len()
    }

    /// Takes `delivery` in hand if its endpoint has room; otherwise (or when it is in hand
    /// already) it stays in MySQL for the sweep. Never waits.
    pub fn offer(self: &Arc<Self>, delivery: Delivery) {
        let Some(endpoint) = self.endpoints.get(&label_of(&delivery)).cloned() else {
            tracing::warn!(
                channel = delivery.channel,
                target = delivery.target,
                "a delivery for an endpoint no longer configured stays pending"
            );
            return;
        };
        let mut in_hand = lock(&self.in_hand);
        if in_hand.contains(&delivery.id) {
            return;
        }
        let Ok(permit) = endpoint.held.clone().try_acquire_owned() else {
            return;
        };
        in_hand.insert(delivery.id);
        drop(in_hand);
        endpoint.show_held(&self.metrics);
        // Its lines carry the order and the event's trace id (`trace.rs`).
        let span = crate::trace::delivery_span(&delivery);
        tokio::spawn(tracing::Instrument::instrument(
            self.clone().work(endpoint, delivery, permit),
            span,
        ));
    }

    /// Finds due deliveries in MySQL every `sweep_interval` until shutdown.
    pub async fn sweep(self: Arc<Self>) {
        let mut stop = self.stop.clone();
        loop {
            for endpoint in self.endpoints.values() {
                let free = endpoint.held.available_permits();
                if free == 0 {
                    continue;
                }
                let (channel, name) = &endpoint.label;
                let target = (channel != "email").then_some(name.as_str());
                // Rows in hand and due are read too (and skipped): ask for a queue's worth.
                match store::due(&self.db, channel, target, endpoint.capacity).await {
                    Ok(due) => due.into_iter().for_each(|delivery| self.offer(delivery)),
                    Err(err) => {
                        Metrics::inc(&self.metrics.mysql_errors);
                        tracing::warn!(error = %err, "looking for due deliveries failed");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.sweep_interval) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
