//! The consume loop: batches from the orders, coupons and points topics, MySQL transactions per
//! batch, offsets committed only after the transactions (and any dead-letter or compensation
//! message, and the point caches in Redis) are safely written. Transient failures are retried
//! with capped backoff; nothing is skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use flashgate_config::Settings;
use flashgate_events::{
    COUPON_REJECTED, CouponRejected, Envelope, OrderRejected, POINTS_REJECTED, PointsRejected,
    TRACE_HEADER,
};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::MySqlPool;
use tokio::sync::watch;

use crate::coupons::persist_coupons;
use crate::decode::{Event, event};
use crate::metrics::Metrics;
use crate::points::{Caches, Change, persist_points};
use crate::store::persist_orders;

/// The persister's moving parts.
pub struct Persister {
    settings: Settings,
    db: MySqlPool,
    consumer: StreamConsumer,
    producer: FutureProducer,
    caches: Caches,
    metrics: Arc<Metrics>,
}

/// Backoff for retries: 100 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

impl Persister {
    /// Connects to Redis (the point caches), creates the consumer (subscribed to the orders,
    /// coupons and points topics) and the producer for dead letters and compensation events.
    pub async fn new(
        settings: Settings,
        db: MySqlPool,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let redis = settings
            .redis
            .connect_pool()
            .await
            .context("connecting to Redis")?;
        let caches = Caches::new(redis, &settings.redis.key_prefix);
        let consumer: StreamConsumer = settings
            .kafka
            .consumer_config(&settings.kafka.consumer_group)
            .create()
            .context("creating the Kafka consumer")?;
        consumer
            .subscribe(&[
                &settings.kafka.orders_topic,
                &settings.kafka.coupons_topic,
                &settings.kafka.points_topic,
            ])
            .context("subscribing to the orders, coupons and points topics")?;
        let producer: FutureProducer = settings
            .kafka
            .producer_config()
            .create()
            .context("creating the Kafka producer")?;
        Ok(Self {
            settings,
            db,
            consumer,
            producer,
            caches,
            metrics,
        })
    }

    /// Consumes until `shutdown` turns true; the batch in hand is finished and committed first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let batch_size = self.settings.persister.batch_size;
        let max_wait = self.settings.persister.max_wait();
        let mut lag_checked = Instant::now();
        loop {
            let first = tokio::select! {
                received = self.consumer.recv() => received,
                _ = shutdown.changed() => break,
            };
            let mut batch: Vec<OwnedMessage> = Vec::with_capacity(batch_size);
            match first {
                Ok(message) => batch.push(message.detach()),
                Err(err) => {
                    tracing::warn!(error = %err, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + max_wait;
            while batch.len() < batch_size {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(message)) => batch.push(message.detach()),
                    Ok(Err(err)) => tracing::warn!(error = %err, "consumer error"),
                    Err(_) => break,
                }
            }
            Metrics::add(&self.metrics.consumed, batch.len() as u64);
            if !self.handle(&batch, &mut shutdown).await {
                break; // shutdown while retrying: nothing committed, the batch comes again
            }
            self.commit(&batch);
            if lag_checked.elapsed() > Duration::from_secs(5) {
                lag_checked = Instant::now();
                self.update_lag();
            }
        }
        tracing::info!("persister stopped consuming");
        Ok(())
    }

    /// Writes one batch; retries transient failures until it succeeds (true) or shutdown is
    /// asked for (false).
    async fn handle(&self, batch: &[OwnedMessage], shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            match self.write(batch).await {
                Ok(()) => {
                    Metrics::add(&self.metrics.batches, 1);
                    Metrics::add(&self.metrics.batch_messages, batch.len() as u64);
                    Metrics::add(
                        &self.metrics.batch_micros,
                        started.elapsed().as_micros() as u64,
                    );
                    return true;
                }
                Err(err) => {
                    Metrics::add(&self.metrics.retries, 1);
                    let wait = backoff(attempt);
                    attempt += 1;
                    tracing::warn!(error = format!("{err:#}"), ?wait, "batch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return false,
                    }
                }
            }
        }
    }

    /// Decodes, stores, dead-letters and publishes compensation events for one batch.
    async fn write(&self, batch: &[OwnedMessage]) -> anyhow::Result<()> {
        let mut orders = Vec::with_capacity(batch.len());
        let mut issued = Vec::new();
        let mut changes = Vec::new();
        let mut point_changes = Vec::new();
        let mut traces = HashMap::new();
        let mut poison = Vec::new();
        for message in batch {
            match event(message.payload()) {
                Ok((Event::Order(order), trace)) => {
                    traces.insert(order.order_id.clone(), trace);
                    orders.push(order);
                }
                Ok((Event::CouponIssued(coupon), trace)) => {
                    traces.insert(coupon.coupon_id.clone(), trace);
                    issued.push(coupon);
                }
                Ok((Event::CouponRedemption { redeemed, change }, _)) => {
                    changes.push((redeemed, change));
                }
                Ok((Event::PointsUsed(used), trace)) => {
                    traces.insert(used.txid.clone(), trace);
                    point_changes.push(Change::Use(used));
                }
                Ok((Event::PointsRefunded(refund), trace)) => {
                    traces.insert(refund.txid.clone(), trace);
                    point_changes.push(Change::Refund(refund));
                }
                Err(reason) => poison.push((message, reason)),
            }
        }
        let outcome = persist_orders(&self.db, &orders, &self.settings.points)
            .await
            .context("writing the batch's orders to MySQL")?;
        let coupons = persist_coupons(&self.db, &issued, &changes)
            .await
            .context("writing the batch's coupon events to MySQL")?;
        let points = persist_points(&self.db, &point_changes)
            .await
            .context("writing the batch's point events to MySQL")?;
        // Commit order: the orders' earnings first, then the point events.
        let mut settle = outcome.points.settle.clone();
        settle.extend(points.settle.iter().cloned());
        self.caches.settle(&settle).await?;
        let by_key = |key: &str| batch.iter().find(|m| m.key() == Some(key.as_bytes()));
        for order in &outcome.unknown_sale {
            if let Some(message) = by_key(&order.order_id) {
                poison.push((message, format!("sale {} does not exist", order.sale_id)));
            }
        }
        for coupon_id in &coupons.unknown_policy {
            if let Some(message) = by_key(coupon_id) {
                poison.push((message, "its coupon policy does not exist".to_owned()));
            }
        }
        for coupon_id in &coupons.unknown_coupon {
            if let Some(message) = by_key(coupon_id) {
                poison.push((message, "the coupon is not in the database".to_owned()));
            }
        }
        for (message, reason) in &poison {
            self.dead_letter(message, reason).await?;
        }
        for order in &outcome.rejected {
            let trace = traces.get(&order.order_id).cloned().unwrap_or_default();
            let event = OrderRejected {
                order_id: order.order_id.clone(),
                sale_id: order.sale_id,
                user_id: order.user_id.clone(),
                quantity: order.quantity,
                reason: "sold out in the system of record".to_owned(),
            }
            .into_envelope(trace.clone(), Utc::now());
            self.compensate(&order.order_id, &event, trace).await?;
        }
        for coupon in &coupons.rejected {
            let trace = traces.get(&coupon.coupon_id).cloned().unwrap_or_default();
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
            let trace = traces.get(&refused.txid).cloned().unwrap_or_default();
            let data = PointsRejected {
                txid: refused.txid.clone(),
                user_id: refused.user_id.clone(),
                amount: refused.amount,
                reason: refused.reason.to_owned(),
            };
            let id = format!("{POINTS_REJECTED}:{}", refused.txid);
            let event = Envelope::v1(POINTS_REJECTED, id, Utc::now(), trace.clone(), data);
            self.compensate(&refused.user_id, &event, trace).await?;
        }
        Metrics::add(
            &self.metrics.points_written,
            outcome.points.written + points.written,
        );
        Metrics::add(&self.metrics.points_refused, points.refused.len() as u64);
        Metrics::add(&self.metrics.duplicates, points.duplicates);
        Metrics::add(&self.metrics.persisted, outcome.confirmed.len() as u64);
        Metrics::add(
            &self.metrics.duplicates,
            (outcome.duplicates.len() + coupons.duplicates.len()) as u64 + coupons.stale,
        );
        let newly_rejected = outcome
            .rejected
            .iter()
            .filter(|o| !outcome.duplicates.contains(&o.order_id))
            .count()
            + coupons
                .rejected
                .iter()
                .filter(|c| !coupons.duplicates.contains(&c.coupon_id))
                .count();
        Metrics::add(&self.metrics.rejected, newly_rejected as u64);
        Metrics::add(&self.metrics.coupons_issued, coupons.issued.len() as u64);
        Metrics::add(&self.metrics.coupon_changes, coupons.changed);
        Metrics::add(&self.metrics.dead_lettered, poison.len() as u64);
        Ok(())
    }

    async fn dead_letter(&self, message: &OwnedMessage, reason: &str) -> anyhow::Result<()> {
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

    /// Publishes a compensation event (a refused order or coupon) and waits for the broker.
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

    /// Commits the offset after the last message of each partition in the batch.
    fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        for message in batch {
            let entry = next
                .entry((message.topic().to_owned(), message.partition()))
                .or_insert(0);
            *entry = (*entry).max(message.offset() + 1);
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
        if let Err(err) = self.consumer.commit(&list, CommitMode::Sync) {
            // After a rebalance the new owner gets these messages again; writes are idempotent.
            tracing::warn!(error = %err, "offset commit failed");
        }
    }

    /// Messages between the consumer's position and the end of each assigned partition.
    fn update_lag(&self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut lag = 0u64;
        for element in positions.elements() {
            let Ok((_, high)) = tokio::task::block_in_place(|| {
                self.consumer.fetch_watermarks(
                    element.topic(),
                    element.partition(),
                    Duration::from_secs(1),
                )
            }) else {
                continue;
            };
            if let Offset::Offset(position) = element.offset() {
                lag += u64::try_from(high - position).unwrap_or(0);
            }
        }
        self.metrics
            .lag
            .store(lag, std::sync::atomic::Ordering::Relaxed);
    }
}
