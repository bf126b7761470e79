//! What the persister sends to Kafka once a batch's transaction has committed: the messages
//! that can never be stored go to the dead-letter topic, what the database refused is
//! announced on the compensations topic, and the orders' ends MySQL now holds and the sales
//! it sold out (`sale.sold_out`) on the lifecycle topic. Again on every replay: a refusal or
//! an end found stored is announced as when it was decided, under the same event id, so
//! downstream dedupes. A refusal decided after its
//! admission waited is announced from `parked_events` ([`Publisher::announce_waited`]).
//!
//! Every send of a batch is queued to the producer first and all are awaited together: a
//! batch's dead letters, refusals and ends cost one wait for the broker, not one each (a topic
//! with 10 % poison ran at a sixth of a clean topic's rate when each dead letter waited for its
//! own acknowledgement; docs/BENCHMARKS.md).

use chrono::Utc;
use flashgate_config::KafkaSettings;
use flashgate_events::{
    COUPON_REJECTED, CouponRejected, Envelope, OrderRejected, POINTS_REJECTED, PointsRejected,
    TRACE_HEADER,
};
use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::batch::{Decoded, Written};
use crate::dlq::letter;
use crate::dlq::reason::{self, ByReason, Reason};
use crate::parked::Parked;

/// Sends queued to the producer, to be awaited together ([`Sends::acknowledged`]).
#[derive(Default)]
struct Sends(Vec<(DeliveryFuture, &'static str)>);

impl Sends {
    /// Hands `record` to the producer (which batches it with the others on its way to the
    /// broker); `what` names it in errors.
    fn queue<K, P>(
        &mut self,
        producer: &FutureProducer,
        record: FutureRecord<'_, K, P>,
        what: &'static str,
    ) -> anyhow::Result<()>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let delivery = producer
            .send_result(record)
            .map_err(|(err, _)| anyhow::anyhow!("{what} not queued: {err}"))?;
        self.0.push((delivery, what));
        Ok(())
    }

    /// Waits until the broker acknowledged every send; the first failure fails them all
    /// (the batch is retried, and every send is safe to repeat).
    async fn acknowledged(self) -> anyhow::Result<()> {
        for (delivery, what) in self.0 {
            delivery
                .await
                .map_err(|_| anyhow::anyhow!("{what} delivery cancelled"))?
                .map_err(|(err, _)| anyhow::anyhow!("{what} delivery failed: {err}"))?;
        }
        Ok(())
    }
}

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
    /// the orders' ends it holds, all sent before any is waited for; returns how many
    /// messages were dead-lettered, by reason.
    pub async fn publish(
        &self,
        decoded: &Decoded<'_>,
        written: &Written,
    ) -> anyhow::Result<ByReason> {
        let mut sends = Sends::default();
        let mut dead: ByReason = [0; Reason::COUNT];
        for (message, reason, sentence) in never_storable(decoded, written) {
            self.queue_dead_letter(&mut sends, message, reason, &sentence)?;
            dead[reason.index()] += 1;
        }
        self.queue_refusals(&mut sends, decoded, written)?;
        self.queue_ends(&mut sends, written)?;
        self.queue_sold_out(&mut sends, written)?;
        sends.acknowledged().await?;
        Ok(dead)
    }

    /// Queues every end stored now or found stored (a replay: the same event again, under
    /// its event id), in the order they were stored, and keyed by order id, so one order's
    /// events keep their order on one partition.
    fn queue_ends(&self, sends: &mut Sends, written: &Written) -> anyhow::Result<()> {
        let orders = &written.orders;
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
            sends.queue(&self.producer, record, "lifecycle event")?;
        }
        Ok(())
    }

    /// Queues a `sale.sold_out` for each sale the batch sold out (or found sold out again
    /// on a replay: the same event id), keyed by sale id, on the lifecycle topic.
    fn queue_sold_out(&self, sends: &mut Sends, written: &Written) -> anyhow::Result<()> {
        for (event, trace_id) in &written.orders.sold_out {
            let key = event.sale_id.to_string();
            let envelope = event.clone().into_envelope(trace_id.clone(), Utc::now());
            let payload = serde_json::to_vec(&envelope)?;
            let record = FutureRecord::to(&self.order_events_topic)
                .key(&key)
                .payload(&payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: TRACE_HEADER,
                    value: Some(trace_id.as_str()),
                }));
            sends.queue(&self.producer, record, "sold-out announcement")?;
        }
        Ok(())
    }

    /// Sends `message` alone to the dead-letter topic (see [`letter`] for the format) and
    /// waits for the broker: for a message the database refuses, found alone by splitting.
    pub async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: Reason,
        sentence: &str,
    ) -> anyhow::Result<()> {
        let mut sends = Sends::default();
        self.queue_dead_letter(&mut sends, message, reason, sentence)?;
        sends.acknowledged().await
    }

    /// Queues `message` as it is (key and payload) for the dead-letter topic, with why and
    /// where it came from in its headers.
    fn queue_dead_letter(
        &self,
        sends: &mut Sends,
        message: &OwnedMessage,
        reason: Reason,
        sentence: &str,
    ) -> anyhow::Result<()> {
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason = reason.code(),
            sentence,
            "dead-lettering a message"
        );
        let record = FutureRecord::to(&self.dead_letter_topic)
            .key(message.key().unwrap_or_default())
            .payload(message.payload().unwrap_or_default())
            .headers(letter::headers(message, reason, sentence));
        sends.queue(&self.producer, record, "dead letter")
    }

    /// Queues the announcements of the orders, coupons and point changes the database refused.
    fn queue_refusals(
        &self,
        sends: &mut Sends,
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
            self.compensate(sends, &order.order_id, &event, trace)?;
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
            self.compensate(sends, &coupon.coupon_id, &event, trace)?;
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
            self.compensate(sends, &refused.user_id, &event, trace)?;
        }
        Ok(())
    }

    /// Announces the refusals of admissions that waited for units in vain (`parked_events`
    /// kind `announce`, each holding its `order.rejected` data), each acknowledged by the
    /// broker (all sent before any is waited for); returns the keys (`waits_for`,
    /// `event_key`) of those announced. One that cannot be read back is left where it is,
    /// logged, for an operator to look at.
    pub async fn announce_waited(
        &self,
        waiting: &[Parked],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut sends = Sends::default();
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
            self.compensate(&mut sends, &key, &event, trace)?;
            announced.push((parked.waits_for.clone(), parked.event_key.clone()));
        }
        sends.acknowledged().await?;
        Ok(announced)
    }

    /// Queues a compensation event (a refused order, coupon or point change).
    fn compensate<T: serde::Serialize>(
        &self,
        sends: &mut Sends,
        key: &str,
        event: &Envelope<T>,
        trace_id: String,
    ) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(event)?;
        let record = FutureRecord::to(&self.compensations_topic)
            .key(key)
            .payload(&payload)
            .headers(OwnedHeaders::new().insert(Header {
                key: TRACE_HEADER,
                value: Some(trace_id.as_str()),
            }));
        sends.queue(&self.producer, record, "compensation")
    }
}

/// The messages of the batch that can never be stored, why (the code) and the details:
/// undecodable or invalid ones, and those whose sale, coupon policy or coupon does not exist,
/// and ends of orders that do not exist in sales that do not either.
fn never_storable<'m>(
    decoded: &Decoded<'m>,
    written: &Written,
) -> Vec<(&'m OwnedMessage, Reason, String)> {
    let mut poison: Vec<(&OwnedMessage, Reason, String)> = decoded
        .poison
        .iter()
        .map(|(message, detail)| (*message, Reason::of_decode_error(detail), detail.clone()))
        .collect();
    for order in &written.orders.unknown_sale {
        if let Some(message) = decoded.by_key(&order.order_id) {
            let sentence = reason::unknown_sale(order.sale_id);
            poison.push((message, Reason::UnknownSale, sentence));
        }
    }
    for coupon_id in &written.coupons.unknown_policy {
        if let Some(message) = decoded.by_key(coupon_id) {
            let sentence = reason::UNKNOWN_COUPON_POLICY.to_owned();
            poison.push((message, Reason::UnknownCouponPolicy, sentence));
        }
    }
    for &index in &written.orders.hopeless_ends {
        let message = decoded.end_messages[index];
        let sentence = reason::ORPHAN_ORDER_END.to_owned();
        poison.push((message, Reason::OrphanOrderEnd, sentence));
    }
    for &index in &written.coupons.hopeless_changes {
        let message = decoded.change_messages[index];
        let sentence = reason::ORPHAN_COUPON_CHANGE.to_owned();
        poison.push((message, Reason::OrphanCouponChange, sentence));
    }
    poison
}
