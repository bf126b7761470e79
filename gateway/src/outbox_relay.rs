//! The outbox relay: moves events from the Redis outbox streams (admitted orders of sales,
//! coupon events of policies) to Kafka.
//!
//! Every gateway runs one; they share the consumer group `relay` on each stream, so an entry
//! goes to one relay. An entry is acknowledged and deleted (one script) only after Kafka
//! confirmed its delivery; until then it stays pending. Entries pending in a relay that died
//! are claimed (`XAUTOCLAIM`) after `relay_claim_idle_ms` and sent again; the persister is
//! idempotent, so a second copy changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashgate_events::TRACE_HEADER;
use flashgate_events::keys::{self, Outbox, PolicyKeys, SaleKeys};
use fred::prelude::{HashesInterface, Pool, SetsInterface, StreamsInterface, Value};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::watch;

use crate::metrics::{Dependency, Metrics, OutboxGauge};
use crate::outbox_entry::{Entry, Topic, encode, parse_claimed, parse_read};
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
    /// Entries that can never be sent (undecodable).
    pub dead_letter: String,
}

impl RelayTopics {
    fn of(&self, topic: Topic) -> &str {
        match topic {
            Topic::Orders => &self.orders,
            Topic::Coupons => &self.coupons,
            Topic::Points => &self.points,
        }
    }
}

/// What the relay needs.
pub struct Relay {
    /// Redis pool.
    pub redis: Pool,
    /// Kafka producer (idempotent, acks=all).
    pub producer: FutureProducer,
    /// `lua/outbox_ack.lua`.
    pub ack_script: Script,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Redis key prefix.
    pub prefix: String,
    /// Destination topics.
    pub topics: RelayTopics,
    /// Entries per read.
    pub batch_size: u64,
    /// Idle time after which another relay's pending entries are claimed.
    pub claim_idle: Duration,
    /// This relay's consumer name (unique per process).
    pub consumer: String,
}

/// Backoff of the relay after a failure: 100 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn fail(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        wait
    }

    fn reset(&mut self) {
        self.0 = Self::MIN;
    }
}

impl Relay {
    /// Runs until `shutdown` turns true, then makes a last pass and flushes the producer.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut groups: HashSet<Outbox> = HashSet::new();
        let mut retry_own: HashSet<Outbox> = HashSet::new();
        let mut outboxes: Vec<Outbox> = Vec::new();
        let mut refreshed = Instant::now() - Duration::from_secs(10);
        let mut claimed = Instant::now();
        let mut backoff = Backoff(Backoff::MIN);
        loop {
            let stopping = *shutdown.borrow();
            if refreshed.elapsed() >= Duration::from_secs(1) || stopping {
                for &outbox in &outboxes {
                    self.observe(outbox).await;
                }
                match self
                    .redis
                    .smembers::<Vec<String>, _>(keys::active_outboxes(&self.prefix))
                    .await
                {
                    Ok(names) => {
                        outboxes = names.iter().filter_map(|k| Outbox::of_key(k)).collect();
                        outboxes.sort_unstable();
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
            let mut failed = false;
            for &outbox in &outboxes {
                let key = outbox.key(&self.prefix);
                if !groups.contains(&outbox) {
                    if let Err(err) = self.ensure_group(&key).await {
                        tracing::warn!(outbox = %key, error = %err, "relay cannot create its group");
                        failed = true;
                        break;
                    }
                    groups.insert(outbox);
                    // Our own pending entries from before (none for a new process name).
                    retry_own.insert(outbox);
                }
                let result = self
                    .pass(outbox, &key, retry_own.contains(&outbox), claim_now)
                    .await;
                match result {
                    Ok(count) => {
                        retry_own.remove(&outbox);
                        moved += count;
                    }
                    Err(err) => {
                        tracing::warn!(outbox = %key, error = %err, "relay pass failed; entries stay pending");
                        retry_own.insert(outbox);
                        failed = true;
                        break;
                    }
                }
            }
            if stopping {
                break;
            }
            let wait = if failed {
                backoff.fail()
            } else {
                backoff.reset();
                if moved > 0 {
                    continue;
                }
                Duration::from_millis(10)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
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

    async fn ensure_group(&self, outbox: &str) -> Result<(), fred::error::Error> {
        let created: Result<Value, _> = self.redis.xgroup_create(outbox, GROUP, "0", true).await;
        match created {
            Err(err) if err.details().starts_with("BUSYGROUP") => Ok(()),
            Err(err) => {
                self.metrics.dependency_error(Dependency::Redis);
                Err(err)
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

    /// Sends the entries, waits for every delivery report, and acknowledges the delivered.
    async fn send(
        &self,
        outbox: Outbox,
        stream: &str,
        entries: Vec<Entry>,
    ) -> anyhow::Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut in_flight = Vec::with_capacity(entries.len());
        for (id, fields) in &entries {
            let (topic, key, payload, trace_id) = match encode(outbox, fields) {
                Ok(record) => (
                    self.topics.of(record.topic),
                    record.key,
                    record.payload,
                    record.trace_id,
                ),
                Err(reason) => {
                    tracing::error!(outbox = stream, entry = %id, reason, "undecodable outbox entry; dead-lettered");
                    let payload = serde_json::to_vec(&serde_json::json!({
                        "reason": reason, "outbox": stream, "entry_id": id, "fields": fields,
                    }))?;
                    (
                        self.topics.dead_letter.as_str(),
                        id.clone(),
                        payload,
                        String::new(),
                    )
                }
            };
            let record = FutureRecord::to(topic).key(&key).payload(&payload).headers(
                OwnedHeaders::new().insert(Header {
                    key: TRACE_HEADER,
                    value: Some(trace_id.as_str()),
                }),
            );
            match self.producer.send_result(record) {
                Ok(delivery) => in_flight.push((id.clone(), delivery)),
                Err((err, _)) => {
                    // The producer's queue is full: stop here; what was queued still counts.
                    self.metrics.dependency_error(Dependency::Kafka);
                    tracing::warn!(error = %err, "producer queue refused an entry");
                    break;
                }
            }
        }
        let mut delivered_ids = Vec::with_capacity(in_flight.len());
        let mut failure = None;
        for (id, delivery) in in_flight {
            match delivery.await {
                Ok(Ok(_)) => delivered_ids.push(id),
                Ok(Err((err, _))) => {
                    self.metrics.dependency_error(Dependency::Kafka);
                    failure = Some(err.to_string());
                }
                Err(_) => failure = Some("producer dropped the delivery".to_owned()),
            }
        }
        let delivered = delivered_ids.len();
        if delivered > 0 {
            let mut args: Vec<Value> = Vec::with_capacity(delivered + 1);
            args.push(GROUP.into());
            args.extend(delivered_ids.into_iter().map(Value::from));
            let _: i64 = self
                .ack_script
                .run(&self.redis, vec![stream.to_owned()], args)
                .await
                .inspect_err(|_| self.metrics.dependency_error(Dependency::Redis))?;
            self.metrics.relayed(delivered as u64);
        }
        match failure {
            Some(reason) if delivered < entries.len() => {
                anyhow::bail!(
                    "{} of {} entries not delivered: {reason}",
                    entries.len() - delivered,
                    entries.len()
                )
            }
            _ if delivered < entries.len() => {
                anyhow::bail!("{} entries not queued", entries.len() - delivered)
            }
            _ => Ok(delivered),
        }
    }

    /// Updates the length and lag gauges of an outbox, and stops watching the outbox of a sale
    /// or policy that is over (or vanished) once it is empty. A sale is over at its end; a
    /// policy when its last coupon has expired (until then a redemption may still be written).
    async fn observe(&self, outbox: Outbox) {
        let key = outbox.key(&self.prefix);
        let Ok(length) = self.redis.xlen::<u64, _>(&key).await else {
            return;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let lag_seconds = if length == 0 {
            0.0
        } else {
            let first: Result<Vec<(String, HashMap<String, String>)>, _> =
                self.redis.xrange(&key, "-", "+", Some(1)).await;
            first
                .ok()
                .and_then(|entries| entries.into_iter().next())
                .and_then(|(id, _)| id.split('-').next()?.parse::<u128>().ok())
                .map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0)
        };
        self.metrics.set_outbox(
            outbox,
            OutboxGauge {
                length,
                lag_seconds,
            },
        );
        let (state, field) = match outbox {
            Outbox::Sale(id) => (SaleKeys::new(&self.prefix, id).sale, "ends_ms"),
            Outbox::Policy(id) => (PolicyKeys::new(&self.prefix, id).policy, "redeem_until_ms"),
            Outbox::Points(_) => return,
        };
        if length > 0 {
            return;
        }
        let over_ms: Result<Option<u128>, _> = self.redis.hget(&state, field).await;
        if let Ok(over_ms) = over_ms
            && over_ms.is_none_or(|end| end < now_ms)
        {
            let _: Result<i64, _> = self
                .redis
                .srem(keys::active_outboxes(&self.prefix), &key)
                .await;
            self.metrics.forget_outbox(outbox);
            tracing::info!(
                outbox = key,
                "over and its outbox empty; relay stops watching it"
            );
        }
    }
}
