//! What the persister sends to Kafka once a batch's transaction has committed: the messages
//! that can never be stored go to the dead-letter topic, what the database refused is
//! announced on the compensations topic, and the orders' ends MySQL now holds on the lifecycle
//! topic. Again on every replay: a refusal or an end found stored is announced as when it was
//! decided, under the same event id, so downstream dedupes. A refusal decided after its
//! admission waited is announced from `parked_events` ([`Publisher::announce_waited`]).

use std::time::Duration;

use chrono::Utc;
use flashgate_config::KafkaSettings;
use flashgate_events::{
    COUPON_REJECTED, CouponRejected, Envelope, OrderRejected, POINTS_REJECTED, PointsRejected,
    TRACE_HEADER,
};
use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::batch::{Decoded, Written};
use crate::parked::Parked;

/// How long a send waits for the broker before the batch is retried.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends dead letters and compensation events, each acknowledged by the broker before the
/// batch's offsets are committed.
pub struct Publisher {
    /// Idempotent, `acks=all` (`kafka.producer_config`): a retried batch re-sends safely.
    producer: FutureProducer,
    /// Where messages that can never be stored go, with the reason in a header.
    dead_letter_topic: String,
    /// Where refusals are announced, for the compensations downstream.
    compensations_topic: String,
    /// Where the orders' ends are announced once stored (`order.cancelled`, ...), keyed by
    /// order id.
    order_events_topic: String,
}

impl Publisher {
    /// Publishes with `producer` to the topics of `kafka`.
    pub fn new(producer: FutureProducer, kafka: &KafkaSettings) -> Self {
        Self {
            producer,
            dead_letter_topic: kafka.dead_letter_topic.clone(),
            compensations_topic: kafka.compensations_topic.clone(),
            order_events_topic: kafka.order_events_topic.clone(),
        }
    }

    /// Dead-letters what the batch can never store, announces what the database refused and
    /// the orders' ends it holds; returns how many messages were dead-lettered.
    pub async fn publish(&self, decoded: &Decoded<'_>, written: &Written) -> anyhow::Result<u64> {
        let poison = never_storable(decoded, written);
        for (message, reason) in &poison {
            self.dead_letter(message, reason).await?;
        }
        self.announce_refusals(decoded, written).await?;
        self.announce_ends(written).await?;
        Ok(poison.len() as u64)
    }

    /// Announces every end stored now or found stored (a replay: the same event again, under
    /// its event id), all sent before any is waited for; in the order they were stored, and
    /// keyed by order id, so one order's events keep their order on one partition.
    async fn announce_ends(&self, written: &Written) -> anyhow::Result<()> {
        let orders = &written.orders;
        let mut deliveries = Vec::new();
        for end in orders.ended.iter().chain(&orders.ends_found) {
            let trace_id = end.trace_id.clone();
            let payload = serde_json::to_vec(&end.event.clone().into_envelope(trace_id))?;
            let record = FutureRecord::to(&self.order_events_topic)
                .key(&end.event.order_id)
                .payload(&payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: TRACE_HEADER,
                    value: Some(end.trace_id.as_str()),
                }));
            deliveries.push(
                self.producer
                    .send_result(record)
                    .map_err(|(err, _)| anyhow::anyhow!("lifecycle event not queued: {err}"))?,
            );
        }
        for delivery in deliveries {
            delivery
                .await
                .map_err(|_| anyhow::anyhow!("lifecycle event delivery cancelled"))?
                .map_err(|(err, _)| anyhow::anyhow!("lifecycle event delivery failed: {err}"))?;
        }
        Ok(())
    }

    /// Sends `message` as it is to the dead-letter topic, with why and where it came from.
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
        let key = message.key().unwrap_or_default();
        let payload = message.payload().unwrap_or_default();
        self.producer
            .send(
                FutureRecord::to(&self.dead_letter_topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                DELIVERY_TIMEOUT,
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("dead-letter delivery failed: {err}"))?;
        Ok(())
    }

    /// Announces the orders, coupons and point changes the database refused.
    async fn announce_refusals(
        &self,
        decoded: &Decoded<'_>,
        written: &Written,
    ) -> anyhow::Result<()> {
        let trace_of = |id: &str| decoded.traces.get(id).cloned().unwrap_or_default();
        for (order, reason) in &written.orders.rejected {
            let trace = trace_of(&order.order_id);
            let event = OrderRejected {
                order_id: order.order_id.clone(),
                sale_id: order.sale_id,
                user_id: order.user_id.clone(),
                quantity: order.quantity,
                reason: reason.message().to_owned(),
            }
            .into_envelope(trace.clone(), Utc::now());
            self.compensate(&order.order_id, &event, trace).await?;
        }
        for coupon in &written.coupons.rejected {
            let trace = trace_of(&coupon.coupon_id);
            let data = CouponRejected {
                coupon_id: coupon.coupon_id.clone(),
                policy_id: coupon.policy_id,
                user_id: coupon.user_id.clone(),
                reason: "exhausted or already claimed in the system of record".to_owned(),
            };
            let id = format!("{COUPON_REJECTED}:{}", coupon.coupon_id);
            let event = Envelope::v1(COUPON_REJECTED, id, Utc::now(), trace.clone(), data);
            self.compensate(&coupon.coupon_id, &event, trace).await?;
        }
        for refused in &written.points.refused {
            let data = PointsRejected {
                txid: refused.txid.clone(),
                user_id: refused.user_id.clone(),
                amount: refused.amount,
                reason: refused.reason.to_owned(),
            };
            let id = format!("{POINTS_REJECTED}:{}", refused.txid);
            let trace = refused.trace_id.clone();
            let event = Envelope::v1(POINTS_REJECTED, id, Utc::now(), trace.clone(), data);
            self.compensate(&refused.user_id, &event, trace).await?;
        }
        Ok(())
    }

    /// Announces the refusals of admissions that waited for units in vain (`parked_events`
    /// kind `announce`, each holding its `order.rejected` data), each acknowledged by the
    /// broker; returns the keys (`waits_for`, `event_key`) of those announced. One that cannot
    /// be read back is left where it is, logged, for an operator to look at.
    pub async fn announce_waited(
        &self,
        waiting: &[Parked],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut announced = Vec::with_capacity(waiting.len());
        for parked in waiting {
            let rejected: OrderRejected = match serde_json::from_str(&parked.data) {
                Ok(rejected) => rejected,
                Err(err) => {
                    tracing::error!(
                        order_id = parked.event_key,
                        error = %err,
                        "a refusal to announce cannot be read back"
                    );
                    continue;
                }
            };
            let key = rejected.order_id.clone();
            let trace = parked.trace_id.clone();
            let event = rejected.into_envelope(trace.clone(), Utc::now());
            self.compensate(&key, &event, trace).await?;
            announced.push((parked.waits_for.clone(), parked.event_key.clone()));
        }
        Ok(announced)
    }

    /// Publishes a compensation event (a refused order, coupon or point change) and waits for
    /// the broker.
    async fn compensate<T: serde::Serialize>(
        &self,
        key: &str,
        event: &Envelope<T>,
        trace_id: String,
    ) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(event)?;
        self.producer
            .send(
                FutureRecord::to(&self.compensations_topic)
                    .key(key)
                    .payload(&payload)
                    .headers(OwnedHeaders::new().insert(Header {
                        key: TRACE_HEADER,
                        value: Some(trace_id.as_str()),
                    })),
                DELIVERY_TIMEOUT,
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("compensation delivery failed: {err}"))?;
        Ok(())
    }
}

/// The messages of the batch that can never be stored, and why: undecodable or invalid ones,
/// and those whose sale, coupon policy or coupon does not exist, and ends of orders that do
/// not exist in sales that do not either.
fn never_storable<'m>(decoded: &Decoded<'m>, written: &Written) -> Vec<(&'m OwnedMessage, String)> {
    let mut poison: Vec<(&OwnedMessage, String)> = decoded.poison.clone();
    for order in &written.orders.unknown_sale {
        if let Some(message) = decoded.by_key(&order.order_id) {
            poison.push((message, format!("sale {} does not exist", order.sale_id)));
        }
    }
    for coupon_id in &written.coupons.unknown_policy {
        if let Some(message) = decoded.by_key(coupon_id) {
            poison.push((message, "its coupon policy does not exist".to_owned()));
        }
    }
    for &index in &written.orders.hopeless_ends {
        let message = decoded.end_messages[index];
        let reason = "neither its order nor the order's sale exists".to_owned();
        poison.push((message, reason));
    }
    for &index in &written.coupons.hopeless_changes {
        let message = decoded.change_messages[index];
        let reason = "neither its coupon nor the coupon's policy exists".to_owned();
        poison.push((message, reason));
    }
    poison
}
