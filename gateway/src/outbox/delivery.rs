//! Delivery of outbox entries: each to the topic its outbox calls for (or the dead-letter
//! topic when it can never be sent), acknowledged and deleted only once Kafka confirmed it.

use flashgate_events::TRACE_HEADER;
use flashgate_events::keys::Outbox;
use fred::prelude::Value;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::metrics::Dependency;
use crate::outbox::entry::encode;
use crate::outbox::relay::{GROUP, Relay};
use crate::outbox::stream::Entry;

impl Relay {
    /// Sends the entries, waits for every delivery report, and acknowledges the delivered.
    pub(super) async fn send(
        &self,
        outbox: Outbox,
        stream: &str,
        entries: Vec<Entry>,
    ) -> anyhow::Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut in_flight = Vec::with_capacity(entries.len());
        for (at, (id, fields)) in entries.iter().enumerate() {
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
                Ok(delivery) => in_flight.push((at, delivery)),
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
        for (at, delivery) in in_flight {
            match delivery.await {
                Ok(Ok(_)) => delivered_ids.push(at),
                Ok(Err((err, _))) => {
                    self.metrics.dependency_error(Dependency::Kafka);
                    failure = Some(err.to_string());
                }
                Err(_) => failure = Some("producer dropped the delivery".to_owned()),
            }
        }
        let delivered = delivered_ids.len();
        if delivered > 0 {
            log_relayed(stream, &entries, &delivered_ids);
            let mut args: Vec<Value> = Vec::with_capacity(delivered + 1);
            args.push(GROUP.into());
            args.extend(
                delivered_ids
                    .into_iter()
                    .map(|at| Value::from(entries[at].0.as_str())),
            );
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
}

/// A debug line per delivered entry, in a span with its order (when it names one) and trace
/// id, as every binary's lines about an order are. The relay is a hot path: nothing is done
/// unless debug is on for this file (`RUST_LOG=info,flashgate_gateway::outbox::delivery=debug`).
fn log_relayed(stream: &str, entries: &[Entry], delivered: &[usize]) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    for &at in delivered {
        let (id, fields) = &entries[at];
        let trace_id = fields.get("trace_id").map_or("", String::as_str);
        let order_id = fields.get("order_id").map(String::as_str);
        let span = tracing::info_span!("order", order_id, trace_id);
        span.in_scope(|| {
            tracing::debug!(
                outbox = stream,
                entry = id.as_str(),
                kind = fields.get("type").map(String::as_str),
                "relayed"
            );
        });
    }
}
