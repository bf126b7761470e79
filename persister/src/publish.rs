//! After a batch's transaction committed: the point caches settled in Redis, the messages that
//! can never be stored sent to the dead-letter topic, and what the database refused announced
//! on the compensations topic (again on every replay: a refusal found stored is announced as
//! when it was decided, under the same event id, so downstream dedupes).

use std::time::Duration;

use chrono::Utc;
use flashgate_events::{
    COUPON_REJECTED, CouponRejected, Envelope, OrderRejected, POINTS_REJECTED, PointsRejected,
    TRACE_HEADER,
};
use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;

use crate::batch::{Decoded, Written};
use crate::consumer::Persister;
use crate::metrics::Metrics;

impl Persister {
    /// Settles, dead-letters and announces what the batch's transaction decided, and counts it.
    pub(crate) async fn announce(
        &self,
        decoded: &Decoded<'_>,
        written: &Written,
    ) -> anyhow::Result<()> {
        let (orders, coupons, points) = (&written.orders, &written.coupons, &written.points);
        self.caches.settle(&points.settle).await?;
        let mut poison: Vec<(&OwnedMessage, String)> = decoded.poison.clone();
        for order in &orders.unknown_sale {
            if let Some(message) = decoded.by_key(&order.order_id) {
                poison.push((message, format!("sale {} does not exist", order.sale_id)));
            }
        }
        for coupon_id in &coupons.unknown_policy {
            if let Some(message) = decoded.by_key(coupon_id) {
                poison.push((message, "its coupon policy does not exist".to_owned()));
            }
        }
        for &index in &coupons.hopeless_changes {
            let message = decoded.change_messages[index];
            let reason = "neither its coupon nor the coupon's policy exists".to_owned();
            poison.push((message, reason));
        }
        for (message, reason) in &poison {
            self.dead_letter(message, reason).await?;
        }
        for (order, reason) in &orders.rejected {
            let trace = decoded
                .traces
                .get(&order.order_id)
                .cloned()
                .unwrap_or_default();
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
        for coupon in &coupons.rejected {
            let trace = decoded
                .traces
                .get(&coupon.coupon_id)
                .cloned()
                .unwrap_or_default();
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
        for refused in &points.refused {
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

        let metrics = &self.metrics;
        Metrics::add(&metrics.points_written, points.written);
        let newly_refused = points.refused.iter().filter(|r| !r.replayed).count();
        Metrics::add(&metrics.points_refused, newly_refused as u64);
        Metrics::add(&metrics.persisted, orders.confirmed.len() as u64);
        let duplicates = orders.duplicates.len() + coupons.duplicates.len();
        Metrics::add(
            &metrics.duplicates,
            duplicates as u64 + coupons.stale + points.duplicates,
        );
        let newly_rejected = orders
            .rejected
            .iter()
            .filter(|(o, _)| !orders.duplicates.contains(&o.order_id))
            .count()
            + coupons
                .rejected
                .iter()
                .filter(|c| !coupons.duplicates.contains(&c.coupon_id))
                .count();
        Metrics::add(&metrics.rejected, newly_rejected as u64);
        Metrics::add(&metrics.coupons_issued, coupons.issued.len() as u64);
        Metrics::add(&metrics.coupon_changes, coupons.changed);
        Metrics::add(&metrics.dead_lettered, poison.len() as u64);
        Metrics::add(&metrics.parked_total, coupons.parked + points.parked);
        Metrics::add(&metrics.unparked_total, coupons.unparked + points.unparked);
        Ok(())
    }

    /// Sends `message` as it is to the dead-letter topic, with why and where it came from.
    pub(crate) async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
    ) -> anyhow::Result<()> {
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
                FutureRecord::to(&self.settings.kafka.dead_letter_topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("dead-letter delivery failed: {err}"))?;
        Ok(())
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
                FutureRecord::to(&self.settings.kafka.compensations_topic)
                    .key(key)
                    .payload(&payload)
                    .headers(OwnedHeaders::new().insert(Header {
                        key: TRACE_HEADER,
                        value: Some(trace_id.as_str()),
                    })),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(err, _)| anyhow::anyhow!("compensation delivery failed: {err}"))?;
        Ok(())
    }
}
