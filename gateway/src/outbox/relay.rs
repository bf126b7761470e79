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
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashgate_events::TRACE_HEADER;
use flashgate_events::keys::{self, Outbox, PolicyKeys, SaleKeys};
use fred::prelude::{ClientLike, Pool, SetsInterface, StreamsInterface, Value};
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
    /// `lua/outbox_retire.lua`: the atomic "empty and over" decision.
    pub retire_script: Script,
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
                match self
                    .redis
                    .smembers::<Vec<String>, _>(keys::active_outboxes(&self.prefix))
                    .await
                {
                    Ok(names) => {
                        outboxes = names.iter().filter_map(|k| Outbox::of_key(k)).collect();
                        outboxes.sort_unstable();
                        failing.retain(|outbox, _| outboxes.binary_search(outbox).is_ok());
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
    /// "Empty and over" is decided by `lua/outbox_retire.lua` in one step by Redis's clock.
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
        let grace_ms = i64::try_from(self.retire_grace.as_millis()).unwrap_or(i64::MAX);
        let decision: Result<String, _> = self
            .retire_script
            .run(
                &self.redis,
                vec![state, key.clone()],
                vec![Value::from(field), Value::from(grace_ms)],
            )
            .await;
        match decision.as_deref() {
            Ok("retired") => {}
            Ok(_) => return,
            Err(err) => {
                self.metrics.dependency_error(Dependency::Redis);
                tracing::warn!(outbox = key, error = %err, "relay cannot decide whether an outbox is over");
                return;
            }
        }
        let removed: Result<i64, _> = self
            .redis
            .srem(keys::active_outboxes(&self.prefix), &key)
            .await;
        if removed.is_ok() {
            self.metrics.forget_outbox(outbox);
            self.metrics.observe_relay_event("retired");
            tracing::info!(
                outbox = key,
                "over and its outbox empty; relay stops watching it"
            );
        }
    }

    /// Puts back into the active set every non-empty sale, policy or point outbox found
    /// outside it. Nothing should ever be there (the retire decision is atomic; loading a sale
    /// or policy registers its outbox), so finding one is logged and counted: it means a
    /// registration failed half-way or state was restored by hand.
    async fn sweep(&self) {
        match self.find_unwatched().await {
            Ok(found) => {
                for key in found {
                    let added: Result<i64, _> = self
                        .redis
                        .sadd(keys::active_outboxes(&self.prefix), &key)
                        .await;
                    if added.is_ok_and(|n| n > 0) {
                        self.metrics.observe_relay_event("rediscovered");
                        tracing::warn!(
                            outbox = key,
                            "non-empty outbox outside the active set; relay watches it again"
                        );
                    }
                }
            }
            Err(err) => {
                self.metrics.dependency_error(Dependency::Redis);
                tracing::warn!(error = format!("{err:#}"), "relay sweep failed");
            }
        }
    }

    async fn find_unwatched(&self) -> anyhow::Result<Vec<String>> {
        let watched: HashSet<String> = self
            .redis
            .smembers(keys::active_outboxes(&self.prefix))
            .await?;
        let mut pattern = String::with_capacity(self.prefix.len() + 16);
        for c in self.prefix.chars() {
            // Glob characters in the prefix match only themselves.
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        let _ = write!(pattern, ":{{*}}:outbox");
        let mut found = Vec::new();
        let client = self.redis.next();
        let mut cursor = "0".to_owned();
        loop {
            let (next, page): (String, Vec<String>) = client
                .custom(
                    fred::cmd!("SCAN"),
                    vec![
                        cursor.as_str(),
                        "MATCH",
                        pattern.as_str(),
                        "COUNT",
                        "1000",
                        "TYPE",
                        "stream",
                    ],
                )
                .await?;
            for key in page {
                // Only the exact outbox keys (a user id may end in `:outbox` too).
                let exact = Outbox::of_key(&key).is_some_and(|o| o.key(&self.prefix) == key);
                if exact && !watched.contains(&key) {
                    let length: u64 = self.redis.xlen(&key).await?;
                    if length > 0 {
                        found.push(key);
                    }
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        Ok(found)
    }
}
