//! The outbox relay: moves events from the Redis outbox streams (admitted orders of sales,
//! coupon events of policies) to Kafka.
//!
//! Every gateway runs one; they share the consumer group `relay` on each stream, so an entry
//! goes to one relay. An entry is acknowledged and deleted (one script) only after Kafka
//! confirmed its delivery; until then it stays pending. Entries pending in a relay that died
//! are claimed (`XAUTOCLAIM`) after `relay_claim_idle_ms` and sent again; the persister is
//! idempotent, so a second copy changes nothing.
//!
//! Which outboxes are read comes from the set `<prefix>:outboxes:active`. An outbox leaves it
//! only when `lua/outbox_retire.lua` finds it empty and its owner over by Redis's clock plus
//! `relay_retire_grace_ms` (one atomic decision); a sweep every `relay_sweep_interval_ms` puts
//! back any non-empty outbox found outside the set. One outbox failing (its consumer group
//! lost after Redis lost its data, say) backs off alone; the others keep moving.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_events::keys::Outbox;
use fred::prelude::{Pool, StreamsInterface, Value};
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::watch;

use crate::metrics::{Dependency, Metrics};
use crate::outbox::entry::Topic;
use crate::outbox::pacing::Pacing;
use crate::outbox::registry;
use crate::outbox::stream::{Entry, parse_claimed, parse_read};
use crate::scripts::Script;

/// Consumer group of the relays on every outbox stream.
pub const GROUP: &str = "relay";

/// Where the relay sends what.
#[derive(Debug, Clone)]
pub struct RelayTopics {
    /// Admitted orders.
    pub orders: String,
    /// Coupon events.
    pub coupons: String,
    /// Point events.
    pub points: String,
    /// Payment and refund requests, for the saga.
    pub payments: String,
    /// Entries that can never be sent (undecodable).
    pub dead_letter: String,
}

impl RelayTopics {
    pub(super) fn of(&self, topic: Topic) -> &str {
        match topic {
            Topic::Orders => &self.orders,
            Topic::Coupons => &self.coupons,
            Topic::Points => &self.points,
            Topic::Payments => &self.payments,
        }
    }
}

/// What the relay needs.
pub struct Relay {
    /// Redis: the outbox streams, their registry, and the ack and retire scripts.
    pub redis: Pool,
    /// The idempotent producer (acks=all): a delivery report means the broker has the event,
    /// and only then is its entry deleted.
    pub producer: FutureProducer,
    /// `lua/outbox_ack.lua`: acknowledges and deletes delivered entries in one step.
    pub ack_script: Script,
    /// `lua/outbox_retire.lua`: the atomic "empty and over" decision.
    pub retire_script: Script,
    /// Relayed entries, dependency failures, outbox gauges; shared with the handlers.
    pub metrics: Arc<Metrics>,
    /// The prefix of every Redis key (see `App::prefix`).
    pub prefix: String,
    /// Where each outbox's events go.
    pub topics: RelayTopics,
    /// Most entries read from one outbox in one pass, and so in flight to Kafka at once: it
    /// bounds the relay's memory and the producer's queue.
    pub batch_size: u64,
    /// Idle time after which another relay's pending entries are claimed.
    pub claim_idle: Duration,
    /// This relay's consumer name (unique per process).
    pub consumer: String,
    /// How long an owner must be over (by Redis's clock) before its empty outbox is retired.
    pub retire_grace: Duration,
    /// How often Redis is scanned for non-empty outboxes missing from the active set.
    pub sweep_interval: Duration,
}

/// Backoff of one outbox after a failed pass: 100 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn fail(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        wait
    }
}

impl Relay {
    /// Runs until `shutdown` turns true, then makes a last pass and flushes the producer.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut groups: HashSet<Outbox> = HashSet::new();
        let mut retry_own: HashSet<Outbox> = HashSet::new();
        // Outboxes whose last pass failed wait here, each on its own backoff, so one broken
        // outbox never holds up the others.
        let mut failing: HashMap<Outbox, (Backoff, Instant)> = HashMap::new();
        // Outboxes that had nothing are read less often, each on its own pace.
        let mut pacing: Pacing<Outbox> = Pacing::default();
        let mut outboxes: Vec<Outbox> = Vec::new();
        let mut refreshed = Instant::now() - Duration::from_secs(10);
        let mut swept = Instant::now();
        let mut claimed = Instant::now();
        loop {
            let stopping = *shutdown.borrow();
            if swept.elapsed() >= self.sweep_interval {
                swept = Instant::now();
                self.sweep().await;
            }
            if refreshed.elapsed() >= Duration::from_secs(1) || stopping {
                for &outbox in &outboxes {
                    self.observe(outbox).await;
                }
                match registry::members(&self.redis, &self.prefix).await {
                    Ok(names) => {
                        outboxes = names.iter().filter_map(|k| Outbox::of_key(k)).collect();
                        outboxes.sort_unstable();
                        failing.retain(|outbox, _| outboxes.binary_search(outbox).is_ok());
                        pacing.retain(|outbox| outboxes.binary_search(outbox).is_ok());
                        refreshed = Instant::now();
                    }
                    Err(err) => {
                        self.metrics.dependency_error(Dependency::Redis);
                        tracing::warn!(error = %err, "relay cannot list outboxes");
                    }
                }
            }
            let claim_now = claimed.elapsed() >= self.claim_idle / 2;
            if claim_now {
                claimed = Instant::now();
            }
            let mut moved = 0usize;
            for &outbox in &outboxes {
                if !stopping
                    && failing
                        .get(&outbox)
                        .is_some_and(|(_, at)| *at > Instant::now())
                {
                    continue;
                }
                // A quiet outbox waits for its turn, unless its own entries are to be sent
                // again or dead relays' claimed now.
                if !stopping
                    && !claim_now
                    && !retry_own.contains(&outbox)
                    && !pacing.due(outbox, Instant::now())
                {
                    continue;
                }
                let key = outbox.key(&self.prefix);
                let result = async {
                    if !groups.contains(&outbox) {
                        self.ensure_group(&key).await?;
                        groups.insert(outbox);
                        // Our own pending entries from before (none for a new process name).
                        retry_own.insert(outbox);
                    }
                    self.pass(outbox, &key, retry_own.contains(&outbox), claim_now)
                        .await
                }
                .await;
                match result {
                    Ok(count) => {
                        retry_own.remove(&outbox);
                        failing.remove(&outbox);
                        pacing.read(outbox, count, Instant::now());
                        moved += count;
                    }
                    Err(err) => {
                        let detail = format!("{err:#}");
                        if detail.contains("NOGROUP") {
                            // Redis lost the stream's group (data loss, restore): make it
                            // again on the next try, from the first entry.
                            groups.remove(&outbox);
                            self.metrics.observe_relay_event("group_recreated");
                        }
                        retry_own.insert(outbox);
                        let (backoff, at) = failing
                            .entry(outbox)
                            .or_insert_with(|| (Backoff(Backoff::MIN), Instant::now()));
                        *at = Instant::now() + backoff.fail();
                        tracing::warn!(outbox = %key, error = detail, "relay pass failed; entries stay pending");
                    }
                }
            }
            if stopping {
                break;
            }
            if moved > 0 {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = shutdown.changed() => {}
            }
        }
        let producer = self.producer.clone();
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("producer flush at shutdown did not complete");
        }
        tracing::info!("outbox relay stopped");
    }

    async fn ensure_group(&self, outbox: &str) -> anyhow::Result<()> {
        let created: Result<Value, _> = self.redis.xgroup_create(outbox, GROUP, "0", true).await;
        match created {
            Err(err) if err.details().starts_with("BUSYGROUP") => Ok(()),
            Err(err) => {
                self.metrics.dependency_error(Dependency::Redis);
                Err(anyhow::Error::new(err).context("creating the relay's consumer group"))
            }
            Ok(_) => Ok(()),
        }
    }

    /// One outbox: re-send own pending entries if a send failed before, claim entries of dead
    /// relays now and then, then send new entries. Returns how many were delivered.
    async fn pass(
        &self,
        outbox: Outbox,
        key: &str,
        retry_own: bool,
        claim: bool,
    ) -> anyhow::Result<usize> {
        let mut delivered = 0;
        if retry_own {
            let pending = self.read(key, "0").await?;
            delivered += self.send(outbox, key, pending).await?;
        }
        if claim {
            let claimed = self.claim(key).await?;
            if !claimed.is_empty() {
                tracing::info!(
                    outbox = key,
                    count = claimed.len(),
                    "claimed entries of a silent relay"
                );
            }
            delivered += self.send(outbox, key, claimed).await?;
        }
        let fresh = self.read(key, ">").await?;
        delivered += self.send(outbox, key, fresh).await?;
        Ok(delivered)
    }

    async fn read(&self, outbox: &str, id: &str) -> anyhow::Result<Vec<Entry>> {
        let reply: Value = self
            .redis
            .xreadgroup(
                GROUP,
                self.consumer.as_str(),
                Some(self.batch_size),
                None,
                false,
                outbox,
                id,
            )
            .await
            .inspect_err(|_| self.metrics.dependency_error(Dependency::Redis))?;
        Ok(parse_read(reply))
    }

    async fn claim(&self, outbox: &str) -> anyhow::Result<Vec<Entry>> {
        let idle = u64::try_from(self.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = self
            .redis
            .xautoclaim(
                outbox,
                GROUP,
                self.consumer.as_str(),
                idle,
                "0-0",
                Some(self.batch_size),
                false,
            )
            .await
            .inspect_err(|_| self.metrics.dependency_error(Dependency::Redis))?;
        Ok(parse_claimed(reply))
    }
}
