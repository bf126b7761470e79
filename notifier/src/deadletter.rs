//! Dead letters of deliveries whose attempts ran out, in the persister's letter format (the
//! event's key and payload as they were; headers `reason`, `reason_code` ([`REASON_CODE`],
//! for `dlq list --reason`), `source_topic`, `source_partition`, `source_offset`), plus `notify_channel` and `notify_target` saying
//! which delivery died. `flashgate-persister dlq replay` sends the letter back to its source
//! topic with the `dlq_replay` header; the notifier then revives that dead delivery, once.

use std::time::Duration;

use flashgate_config::KafkaSettings;
use flashgate_events::REASON_CODE_HEADER;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::store::Delivery;

/// How long a send waits for the broker before it is tried again.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The notifier's one reason code (`reason_code` header): a delivery whose attempts ran out
/// (the endpoint failed, timed out or kept its breaker open); `reason` says how it last
/// failed. Replay them with `flashgate-persister dlq replay --reason delivery_failed` once the
/// endpoint is back.
pub const REASON_CODE: &str = "delivery_failed";

/// Header naming the dead delivery's channel.
pub const CHANNEL_HEADER: &str = "notify_channel";

/// Header naming the dead delivery's target (endpoint name or address).
pub const TARGET_HEADER: &str = "notify_target";

/// Sends dead letters, each acknowledged by the broker before the row says `dead`.
#[derive(Clone)]
pub struct DeadLetters {
    /// Idempotent, `acks=all` (`kafka.producer_config`).
    producer: FutureProducer,
    /// `kafka.dead_letter_topic`.
    topic: String,
}

impl DeadLetters {
    /// Sends with `producer` to `kafka.dead_letter_topic`.
    pub fn new(producer: FutureProducer, kafka: &KafkaSettings) -> Self {
        Self {
            producer,
            topic: kafka.dead_letter_topic.clone(),
        }
    }

    /// Sends `delivery`'s event to the dead-letter topic with `reason`.
    pub async fn send(&self, delivery: &Delivery, reason: &str) -> anyhow::Result<()> {
        let partition = delivery.source_partition.to_string();
        let offset = delivery.source_offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(reason),
            })
            .insert(Header {
                key: REASON_CODE_HEADER,
                value: Some(REASON_CODE),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(delivery.source_topic.as_str()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: CHANNEL_HEADER,
                value: Some(delivery.channel.as_str()),
            })
            .insert(Header {
                key: TARGET_HEADER,
                value: Some(delivery.target.as_str()),
            });
        let key = delivery.key.as_deref().unwrap_or_default();
        self.producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(key)
                    .payload(&delivery.payload)
                    .headers(headers),
                DELIVERY_TIMEOUT,
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("dead-letter delivery failed: {err}"))?;
        Ok(())
    }

    /// Waits up to `within` for letters still queued (at shutdown).
    pub fn flush(&self, within: Duration) {
        if let Err(err) = self.producer.flush(within) {
            tracing::warn!(error = %err, "producer flush at shutdown");
        }
    }
}
