//! The outbox relay: moves admitted orders from the sales' Redis streams to Kafka.
//!
//! Every gateway runs one; they share the consumer group `relay` on each stream, so an entry
//! goes to one relay. An entry is acknowledged and deleted (one script) only after Kafka
//! confirmed its delivery; until then it stays pending. Entries pending in a relay that died
//! are claimed (`XAUTOCLAIM`) after `relay_claim_idle_ms` and sent again; the persister is
//! idempotent, so a second copy changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use flashgate_events::{OrderAdmitted, TRACE_HEADER};
use fred::prelude::{HashesInterface, Pool, SetsInterface, StreamsInterface, Value};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::watch;

use crate::keys::{self, SaleKeys};
use crate::metrics::{Dependency, Metrics, OutboxGauge};
use crate::scripts::Script;

/// Consumer group of the relays on every outbox stream.
pub const GROUP: &str = "relay";

/// One outbox entry: its stream id and fields.
type Entry = (String, HashMap<String, String>);

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
    /// Topic of admitted orders.
    pub topic: String,
    /// Topic for entries that can never be sent (undecodable).
    pub dead_letter_topic: String,
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
        let mut groups: HashSet<u64> = HashSet::new();
        let mut retry_own: HashSet<u64> = HashSet::new();
        let mut sales: Vec<u64> = Vec::new();
        let mut refreshed = Instant::now() - Duration::from_secs(10);
        let mut claimed = Instant::now();
        let mut backoff = Backoff(Backoff::MIN);
        loop {
            let stopping = *shutdown.borrow();
            if refreshed.elapsed() >= Duration::from_secs(1) || stopping {
                for &sale_id in &sales {
                    self.observe(sale_id).await;
                }
                match self
                    .redis
                    .smembers::<Vec<u64>, _>(keys::active_sales(&self.prefix))
                    .await
                {
                    Ok(ids) => {
                        sales = ids;
                        refreshed = Instant::now();
                    }
                    Err(err) => {
                        self.metrics.dependency_error(Dependency::Redis);
                        tracing::warn!(error = %err, "relay cannot list sales");
                    }
                }
            }
            let claim_now = claimed.elapsed() >= self.claim_idle / 2;
            if claim_now {
                claimed = Instant::now();
            }
            let mut moved = 0usize;
            let mut failed = false;
            for &sale_id in &sales {
                let keys = SaleKeys::new(&self.prefix, sale_id);
                if !groups.contains(&sale_id) {
                    if let Err(err) = self.ensure_group(&keys.outbox).await {
                        tracing::warn!(sale_id, error = %err, "relay cannot create its group");
                        failed = true;
                        break;
                    }
                    groups.insert(sale_id);
                    // Our own pending entries from before (none for a new process name).
                    retry_own.insert(sale_id);
                }
                let result = self
                    .pass(
                        sale_id,
                        &keys.outbox,
                        retry_own.contains(&sale_id),
                        claim_now,
                    )
                    .await;
                match result {
                    Ok(count) => {
                        retry_own.remove(&sale_id);
                        moved += count;
                    }
                    Err(err) => {
                        tracing::warn!(sale_id, error = %err, "relay pass failed; entries stay pending");
                        retry_own.insert(sale_id);
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

    /// One sale: re-send own pending entries if a send failed before, claim entries of dead
    /// relays now and then, then send new entries. Returns how many were delivered.
    async fn pass(
        &self,
        sale_id: u64,
        outbox: &str,
        retry_own: bool,
        claim: bool,
    ) -> anyhow::Result<usize> {
        let mut delivered = 0;
        if retry_own {
            let pending = self.read(outbox, "0").await?;
            delivered += self.send(sale_id, outbox, pending).await?;
        }
        if claim {
            let claimed = self.claim(outbox).await?;
            if !claimed.is_empty() {
                tracing::info!(
                    sale_id,
                    count = claimed.len(),
                    "claimed entries of a silent relay"
                );
            }
            delivered += self.send(sale_id, outbox, claimed).await?;
        }
        let fresh = self.read(outbox, ">").await?;
        delivered += self.send(sale_id, outbox, fresh).await?;
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
    async fn send(&self, sale_id: u64, outbox: &str, entries: Vec<Entry>) -> anyhow::Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut in_flight = Vec::with_capacity(entries.len());
        for (id, fields) in &entries {
            let (topic, key, payload, trace_id) = match decode(sale_id, fields) {
                Ok((order, trace_id)) => {
                    let key = order.order_id.clone();
                    let envelope = order.into_envelope(trace_id.clone());
                    let payload = serde_json::to_vec(&envelope)?;
                    (self.topic.as_str(), key, payload, trace_id)
                }
                Err(reason) => {
                    tracing::error!(sale_id, entry = %id, reason, "undecodable outbox entry; dead-lettered");
                    let payload = serde_json::to_vec(&serde_json::json!({
                        "reason": reason, "sale_id": sale_id, "entry_id": id, "fields": fields,
                    }))?;
                    (
                        self.dead_letter_topic.as_str(),
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
                .run(&self.redis, vec![outbox.to_owned()], args)
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

    /// Updates the outbox length and lag gauges of a sale, and stops watching a sale that
    /// has ended (or vanished) once its outbox is empty.
    async fn observe(&self, sale_id: u64) {
        let keys = SaleKeys::new(&self.prefix, sale_id);
        let Ok(length) = self.redis.xlen::<u64, _>(&keys.outbox).await else {
            return;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let lag_seconds = if length == 0 {
            0.0
        } else {
            let first: Result<Vec<(String, HashMap<String, String>)>, _> =
                self.redis.xrange(&keys.outbox, "-", "+", Some(1)).await;
            first
                .ok()
                .and_then(|entries| entries.into_iter().next())
                .and_then(|(id, _)| id.split('-').next()?.parse::<u128>().ok())
                .map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0)
        };
        self.metrics.set_outbox(
            sale_id,
            OutboxGauge {
                length,
                lag_seconds,
            },
        );
        if length > 0 {
            return;
        }
        let ends_ms: Result<Option<u128>, _> = self.redis.hget(&keys.sale, "ends_ms").await;
        if let Ok(ends_ms) = ends_ms
            && ends_ms.is_none_or(|end| end < now_ms)
        {
            let _: Result<i64, _> = self
                .redis
                .srem(keys::active_sales(&self.prefix), sale_id)
                .await;
            self.metrics.forget_outbox(sale_id);
            tracing::info!(
                sale_id,
                "sale over and its outbox empty; relay stops watching it"
            );
        }
    }
}

/// An outbox entry as an admitted order and its trace id.
fn decode(
    sale_id: u64,
    fields: &HashMap<String, String>,
) -> Result<(OrderAdmitted, String), String> {
    let get = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| format!("field `{name}` missing"))
    };
    let number = |name: &str| -> Result<u64, String> {
        get(name)?
            .parse::<u64>()
            .map_err(|_| format!("field `{name}` is not a number"))
    };
    let quantity =
        u32::try_from(number("quantity")?).map_err(|_| "quantity too large".to_owned())?;
    let unit_price = number("unit_price")?;
    let admitted_ms = i64::try_from(number("admitted_ms")?).map_err(|_| "bad time".to_owned())?;
    let order = OrderAdmitted {
        order_id: get("order_id")?.clone(),
        sale_id,
        user_id: get("user_id")?.clone(),
        quantity,
        unit_price,
        amount: unit_price
            .checked_mul(u64::from(quantity))
            .ok_or_else(|| "amount overflows".to_owned())?,
        admitted_at: DateTime::from_timestamp_millis(admitted_ms)
            .ok_or_else(|| "admitted_ms out of range".to_owned())?,
    };
    Ok((order, fields.get("trace_id").cloned().unwrap_or_default()))
}

/// Entries of an `XREADGROUP` reply on one stream: `[[key, [[id, [f, v, ...]], ...]]]`, or
/// nil when there is nothing.
fn parse_read(reply: Value) -> Vec<Entry> {
    let Value::Array(streams) = reply else {
        return Vec::new();
    };
    streams
        .into_iter()
        .filter_map(|stream| match stream {
            Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
            _ => None,
        })
        .flat_map(parse_entries)
        .collect()
}

/// Entries of an `XAUTOCLAIM` reply: `[next, [[id, [field, value, ...]], ...], deleted?]`.
fn parse_claimed(reply: Value) -> Vec<Entry> {
    match reply {
        Value::Array(mut parts) if parts.len() >= 2 => parse_entries(parts.swap_remove(1)),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]`; entries whose fields are nil (deleted) are skipped.
fn parse_entries(entries: Value) -> Vec<Entry> {
    let Value::Array(entries) = entries else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut pair) = entry else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let Value::Array(flat) = pair.pop()? else {
                return None;
            };
            let id = pair.pop()?.as_string()?;
            let map = flat
                .chunks(2)
                .filter_map(|kv| Some((kv.first()?.as_string()?, kv.get(1)?.as_string()?)))
                .collect();
            Some((id, map))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_outbox_entry_becomes_an_admitted_order() {
        let entry = fields(&[
            ("order_id", "7-abc"),
            ("user_id", "u1"),
            ("quantity", "2"),
            ("unit_price", "1500"),
            ("admitted_ms", "1700000000000"),
            ("trace_id", "t1"),
        ]);
        let (order, trace) = decode(7, &entry).unwrap();
        assert_eq!(order.amount, 3000);
        assert_eq!(order.sale_id, 7);
        assert_eq!(trace, "t1");
        let broken = fields(&[("order_id", "x")]);
        assert!(decode(7, &broken).is_err());
    }

    #[test]
    fn claimed_entries_are_parsed_from_the_raw_reply() {
        let reply = Value::Array(vec![
            Value::from("0-0"),
            Value::Array(vec![Value::Array(vec![
                Value::from("1-1"),
                Value::Array(vec![Value::from("order_id"), Value::from("o1")]),
            ])]),
            Value::Array(vec![]),
        ]);
        let entries = parse_claimed(reply);
        assert_eq!(entries.len(), 1);
        let read = Value::Array(vec![Value::Array(vec![
            Value::from("fg:{s:1}:outbox"),
            Value::Array(vec![Value::Array(vec![
                Value::from("2-0"),
                Value::Array(vec![Value::from("order_id"), Value::from("o2")]),
            ])]),
        ])]);
        assert_eq!(parse_read(read)[0].1["order_id"], "o2");
        assert!(parse_read(Value::Null).is_empty());
        assert_eq!(entries[0].0, "1-1");
        assert_eq!(entries[0].1["order_id"], "o1");
    }
}
