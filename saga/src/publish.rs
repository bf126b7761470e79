//! What the saga sends to Kafka: a payment's outcome on the lifecycle topic (after its row is
//! written final), and the messages of the payments topic it can never act on, to the
//! dead-letter topic with the reason.
//!
//! An outcome is announced at least once: a crash after the broker acknowledged it but before
//! the row says so announces it again, under the same event id (`<type>:<order id>`), for
//! downstream to dedupe.

use std::time::Duration;

use chrono::Utc;
use flashgate_config::KafkaSettings;
use flashgate_events::{PaymentOutcome, REASON_CODE_HEADER, TRACE_HEADER};
use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::payment::Payment;

/// How long a send waits for the broker before it is tried again later.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends outcomes and dead letters, each acknowledged by the broker before it counts as sent.
#[derive(Clone)]
pub struct Publisher {
    /// Idempotent, `acks=all` (`kafka.producer_config`).
    producer: FutureProducer,
    /// Where outcomes go, keyed by order id (`kafka.order_events_topic`).
    order_events_topic: String,
    /// Where messages that can never be acted on go, with the reason in a header.
    dead_letter_topic: String,
}

impl Publisher {
    /// Publishes with `producer` to the topics of `kafka`.
    pub fn new(producer: FutureProducer, kafka: &KafkaSettings) -> Self {
        Self {
            producer,
            order_events_topic: kafka.order_events_topic.clone(),
            dead_letter_topic: kafka.dead_letter_topic.clone(),
        }
    }

    /// Announces `payment`'s outcome as `kind` and waits for the broker.
    pub async fn announce(&self, payment: &Payment, kind: &str) -> anyhow::Result<()> {
        let outcome = PaymentOutcome {
            order_id: payment.order_id.clone(),
            sale_id: payment.sale_id,
            user_id: payment.user_id.clone(),
            amount: payment.amount,
            provider_ref: payment.provider_ref.clone(),
            failure_code: match kind {
                flashgate_events::PAYMENT_REFUNDED => payment.refund_reason.clone(),
                _ => payment.failure_code.clone(),
            },
            attempts: payment.attempts,
            at: Utc::now(),
        };
        let payload = serde_json::to_vec(&outcome.into_envelope(kind, payment.trace_id.clone()))?;
        self.producer
            .send(
                FutureRecord::to(&self.order_events_topic)
                    .key(&payment.order_id)
                    .payload(&payload)
                    .headers(OwnedHeaders::new().insert(Header {
                        key: TRACE_HEADER,
                        value: Some(payment.trace_id.as_str()),
                    })),
                DELIVERY_TIMEOUT,
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("outcome delivery failed: {err}"))?;
        Ok(())
    }

    /// Sends `message` as it is to the dead-letter topic, with why (the sentence and its
    /// [`reason_code`]) and where it came from.
    pub async fn dead_letter(&self, message: &OwnedMessage, reason: &str) -> anyhow::Result<()> {
        tracing::warn!(
            partition = message.partition(),
            offset = message.offset(),
            reason,
            "dead-lettering a message"
        );
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(reason),
            })
            .insert(Header {
                key: REASON_CODE_HEADER,
                value: Some(reason_code(reason)),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(offset.as_str()),
            });
        self.producer
            .send(
                FutureRecord::to(&self.dead_letter_topic)
                    .key(message.key().unwrap_or_default())
                    .payload(message.payload().unwrap_or_default())
                    .headers(headers),
                DELIVERY_TIMEOUT,
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("dead-letter delivery failed: {err}"))?;
        Ok(())
    }

    /// Waits up to `within` for messages still queued to reach the broker (at shutdown).
    pub fn flush(&self, within: Duration) {
        if let Err(err) = self.producer.flush(within) {
            tracing::warn!(error = %err, "producer flush at shutdown");
        }
    }
}

/// The stable code of a dead letter's `reason` sentence (its `reason_code` header, which
/// `flashgate-persister dlq list --reason` and `dlq replay --reason` go by), in the codes the
/// persister uses for the same failures: `undecodable`, `unsupported` (an event type or
/// version the saga does not know), `refused_by_database`, else `invalid` (a rule of the
/// request broken).
pub fn reason_code(reason: &str) -> &'static str {
    if reason == "empty message" || reason.starts_with("undecodable") {
        "undecodable"
    } else if reason.starts_with("unsupported version") || reason.starts_with("unknown event type")
    {
        "unsupported"
    } else if reason.starts_with("the database refuses it") {
        "refused_by_database"
    } else {
        "invalid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_the_saga_dead_letters_for_has_the_persisters_code() {
        assert_eq!(reason_code("empty message"), "undecodable");
        assert_eq!(
            reason_code("undecodable data: missing field"),
            "undecodable"
        );
        assert_eq!(
            reason_code("unknown event type `order.admitted`"),
            "unsupported"
        );
        assert_eq!(
            reason_code("unsupported version 2 of payment.requested"),
            "unsupported"
        );
        assert_eq!(
            reason_code("the database refuses it: Data too long"),
            "refused_by_database"
        );
        assert_eq!(reason_code("give_up_at is before pay_by"), "invalid");
    }
}
