//! Writing one batch, in its steps: decode → persist (one MySQL transaction) → settle the
//! point caches in Redis → publish (dead letters, compensation events, orders' ends) → forget
//! the ended orders' records in Redis. The consumer then commits the offsets and counts
//! ([`crate::consumer`]). Every step after the commit is safe to repeat: a failure in one
//! retries the batch, whose transaction then finds everything stored and changes nothing.
//!
//! Transient failures are retried with capped backoff; nothing is skipped. A batch the
//! database refuses for good is split until the message it refuses is alone, and that one
//! goes to the dead-letter topic.
//!
//! Between batches, busy or idle, [`BatchWriter::tick`] decides the admissions whose wait for
//! units is over in sales no batch touches, and announces refusals left unannounced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_config::PointsSettings;
use flashgate_events::OrderEnd;
use rdkafka::message::OwnedMessage;
use sqlx::MySqlPool;
use tokio::sync::watch;

use crate::batch::{self, Decoded, Written};
use crate::dlq::reason::{self, ByReason, Reason};
use crate::failure;
use crate::metrics::{Counts, Metrics};
use crate::orders::OrderRecords;
use crate::parked;
use crate::points::PointCaches;
use crate::publish::Publisher;

/// Why writing a batch failed.
enum WriteFailure {
    /// The database refuses it, and would on every retry: `"<number>: <message>"`.
    Refused(String),
    /// Anything else (MySQL, Redis or the broker unreachable, a lock timeout, a deadlock).
    Transient(anyhow::Error),
}

impl WriteFailure {
    /// Refused when a retry would meet `err` again (see [`failure`]), else transient.
    fn of_database(err: sqlx::Error) -> Self {
        match failure::deterministic(&err) {
            Some(reason) => Self::Refused(reason),
            None => Self::Transient(anyhow::Error::new(err).context("writing the batch to MySQL")),
        }
    }
}

/// Most refusals announced from `parked_events` at once (the rest at the next batch or tick).
const ANNOUNCE_AT_ONCE: u32 = 500;

/// Backoff for retries: 100 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

/// Everything a batch is written to.
pub struct BatchWriter {
    /// Where each part's one transaction runs.
    pub db: MySqlPool,
    /// What a paid order earns, written with its end.
    pub earning: PointsSettings,
    /// The users' point caches, settled after each commit.
    pub caches: PointCaches,
    /// Dead letters, compensation events and orders' ends.
    pub publisher: Publisher,
    /// The sales' order records in Redis, forgotten once MySQL holds their end.
    pub records: OrderRecords,
    /// Retries are counted as they happen (the rest once the batch is committed).
    pub metrics: Arc<Metrics>,
    /// How long an admission a guard of MySQL refuses waits for its units before it is
    /// rejected (`persister.refused_admission_wait_ms`).
    pub wait: Duration,
}

impl BatchWriter {
    /// Writes `batch`; retries transient failures until it succeeds (its counts) or shutdown
    /// is asked for (`None`: nothing may be committed, the batch comes again).
    ///
    /// When the database refuses the batch for good (a constraint, a value that does not fit:
    /// see [`failure`]), the batch is split in halves, each written on its own, until the
    /// message it refuses is alone: that one goes to the dead-letter topic with the server's
    /// reason, and everything else is stored. One bad message never stalls a partition, and
    /// the normal path stays one transaction per batch.
    pub async fn write(
        &self,
        batch: &[OwnedMessage],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Counts> {
        let mut counts = Counts::default();
        // Parts still to write, the next one last.
        let mut parts: Vec<&[OwnedMessage]> = vec![batch];
        while let Some(part) = parts.pop() {
            let mut attempt = 0;
            loop {
                let failure = match self.write_part(part, &[]).await {
                    Ok(written) => {
                        counts.add(&written);
                        break;
                    }
                    Err(WriteFailure::Refused(reason)) if part.len() == 1 => {
                        let sentence = format!("{}: {reason}", reason::REFUSED_BY_DATABASE);
                        let refused = Reason::RefusedByDatabase;
                        match self
                            .publisher
                            .dead_letter(&part[0], refused, &sentence)
                            .await
                        {
                            Ok(()) => {
                                counts.dead_lettered += 1;
                                counts.dead_letters[refused.index()] += 1;
                                counts.refused_by_database += 1;
                                break;
                            }
                            Err(err) => err,
                        }
                    }
                    Err(WriteFailure::Refused(reason)) => {
                        tracing::warn!(
                            messages = part.len(),
                            reason,
                            "the database refuses a batch; splitting it to find the message"
                        );
                        counts.isolated += 1;
                        let (first, second) = part.split_at(part.len() / 2);
                        parts.push(second);
                        parts.push(first);
                        break;
                    }
                    Err(WriteFailure::Transient(err)) => err,
                };
                Metrics::add(&self.metrics.retries, 1);
                let wait = backoff(attempt);
                attempt += 1;
                tracing::warn!(
                    error = format!("{failure:#}"),
                    ?wait,
                    "batch failed; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return None,
                }
            }
        }
        Some(counts)
    }

    /// Decides the admissions whose wait for units is over, in sales no batch touched (a
    /// batch decides those of the sales it touches), and announces the refusals left
    /// unannounced by a publication that failed or was cut short. The consumer runs it every
    /// [`crate::consumer`] tick, busy or idle; the counts of what it did. A failure is logged
    /// and left to the next tick: nothing is committed to Kafka by it.
    pub async fn tick(&self) -> Counts {
        match self.settle_waits().await {
            Ok(counts) => counts,
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "deciding overdue admissions failed"
                );
                Counts::default()
            }
        }
    }

    async fn settle_waits(&self) -> anyhow::Result<Counts> {
        let sales: Vec<u64> = parked::overdue(&self.db, parked::STOCK, self.wait)
            .await?
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        let mut counts = Counts::default();
        if !sales.is_empty() {
            counts = match self.write_part(&[], &sales).await {
                Ok(counts) => counts,
                Err(WriteFailure::Transient(err)) => return Err(err),
                Err(WriteFailure::Refused(reason)) => {
                    anyhow::bail!("the database refuses overdue admissions of {sales:?}: {reason}")
                }
            };
            // Not a batch of messages.
            (counts.batches, counts.batch_micros) = (0, 0);
        }
        self.announce_waited().await?;
        Ok(counts)
    }

    /// Announces the refusals decided after a wait (`parked_events` kind `announce`), then
    /// deletes them: at least once, under the refusal's event id (a crash between the two
    /// announces it again, as a replayed batch would).
    async fn announce_waited(&self) -> anyhow::Result<u64> {
        let waiting = parked::oldest(&self.db, parked::ANNOUNCE, ANNOUNCE_AT_ONCE).await?;
        if waiting.is_empty() {
            return Ok(0);
        }
        let keys = self.publisher.announce_waited(&waiting).await?;
        let mut conn = self.db.acquire().await?;
        parked::release(&mut conn, parked::ANNOUNCE, &keys).await?;
        Ok(keys.len() as u64)
    }

    /// One part of a batch: decode → persist → settle caches → publish → forget ended orders.
    /// The admissions parked for the sales `revisit` are decided too.
    async fn write_part(
        &self,
        part: &[OwnedMessage],
        revisit: &[u64],
    ) -> Result<Counts, WriteFailure> {
        let started = Instant::now();
        let decoded = Decoded::new(part);
        let written = batch::persist(&self.db, &decoded, revisit, &self.earning, self.wait)
            .await
            .map_err(WriteFailure::of_database)?;
        crate::trace::log_orders(&decoded.orders, &decoded.traces, &written.orders);
        crate::trace::log_ends(&decoded.ends, &written.orders);
        self.caches
            .settle(&written.points.settle)
            .await
            .map_err(WriteFailure::Transient)?;
        let dead_letters = self
            .publisher
            .publish(&decoded, &written)
            .await
            .map_err(WriteFailure::Transient)?;
        // No message of this part carries a refusal decided after its wait: it was left in
        // `parked_events` to be announced from there (by the next tick if this fails).
        if written.orders.admissions_rejected_after_wait > 0 {
            self.announce_waited()
                .await
                .map_err(WriteFailure::Transient)?;
        }
        // After the announcement: a record forgotten is never needed again to answer for an
        // order whose end downstream has not heard of.
        let forgotten = self
            .records
            .forget(written.orders.settled_ends())
            .await
            .map_err(WriteFailure::Transient)?;
        let mut counts = counts(&written, dead_letters);
        counts.orders_forgotten = forgotten;
        counts.batch_messages = part.len() as u64;
        counts.batch_micros = started.elapsed().as_micros() as u64;
        Ok(counts)
    }
}

/// What one written part adds to the counters; a refusal or duplicate found again on a
/// replay is not counted as new.
fn counts(written: &Written, dead_letters: ByReason) -> Counts {
    let (orders, coupons, points) = (&written.orders, &written.coupons, &written.points);
    let newly_rejected = orders
        .rejected
        .iter()
        .filter(|(o, _)| !orders.duplicates.contains(&o.order_id))
        .count()
        + orders.admissions_rejected_after_wait as usize
        + coupons
            .rejected
            .iter()
            .filter(|c| !coupons.duplicates.contains(&c.coupon_id))
            .count();
    let duplicates = orders.duplicates.len()
        + orders.ends_found.len()
        + orders.ends_stale.len()
        + coupons.duplicates.len();
    let ended = |end: OrderEnd| orders.ended.iter().filter(|e| e.event.end == end).count() as u64;
    Counts {
        persisted: orders.confirmed.len() as u64,
        coupons_issued: coupons.issued.len() as u64,
        coupon_changes: coupons.changed,
        points_written: points.written,
        points_refused: points.refused.iter().filter(|r| !r.replayed).count() as u64,
        duplicates: duplicates as u64 + coupons.stale + points.duplicates,
        rejected: newly_rejected as u64,
        dead_lettered: dead_letters.iter().sum(),
        dead_letters,
        parked: coupons.parked + points.parked + orders.ends_parked + orders.admissions_parked,
        unparked: coupons.unparked
            + points.unparked
            + orders.ends_unparked
            + orders.admissions_unparked
            + orders.admissions_rejected_after_wait,
        orders_cancelled: ended(OrderEnd::Cancelled),
        orders_expired: ended(OrderEnd::Expired),
        orders_paid: ended(OrderEnd::Paid),
        order_ends_parked: orders.ends_parked,
        order_ends_unparked: orders.ends_unparked,
        admissions_parked: orders.admissions_parked,
        admissions_unparked: orders.admissions_unparked,
        admissions_rejected_after_wait: orders.admissions_rejected_after_wait,
        batches: 1,
        ..Counts::default()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use flashgate_events::{OrderAdmitted, OrderEnded};

    use super::*;
    use crate::orders::{End, RejectReason};
    use crate::points::Refused;

    fn order(order_id: &str) -> OrderAdmitted {
        OrderAdmitted {
            order_id: order_id.to_owned(),
            sale_id: 1,
            user_id: "ana".to_owned(),
            quantity: 1,
            unit_price: 1,
            amount: 1,
            admitted_at: Utc::now(),
            pay_by: None,
        }
    }

    #[test]
    fn a_refusal_found_again_on_a_replay_is_not_counted_as_new() {
        let mut written = Written::default();
        written.orders.confirmed = vec!["1-a".to_owned()];
        written.orders.duplicates = vec!["1-r".to_owned()];
        written.orders.rejected = vec![
            (order("1-r"), RejectReason::SoldOut),
            (order("1-s"), RejectReason::SoldOut),
        ];
        written.coupons.stale = 2;
        written.points.refused = [true, false]
            .map(|replayed| Refused {
                txid: "use-1".to_owned(),
                user_id: "ana".to_owned(),
                amount: 5,
                reason: "too low",
                trace_id: String::new(),
                replayed,
            })
            .to_vec();
        let mut dead = [0; Reason::COUNT];
        dead[Reason::UnknownSale.index()] = 2;
        dead[Reason::Undecodable.index()] = 1;
        let counts = counts(&written, dead);
        assert_eq!(counts.persisted, 1);
        assert_eq!(counts.rejected, 1, "1-s only");
        assert_eq!(counts.duplicates, 3, "1-r and two stale changes");
        assert_eq!(counts.points_refused, 1);
        assert_eq!(counts.dead_lettered, 3);
        assert_eq!(counts.dead_letters, dead);
        assert_eq!(counts.batches, 1);
    }

    #[test]
    fn ends_are_counted_by_end_and_those_found_or_stale_as_duplicates() {
        let end = |end: OrderEnd| End {
            event: OrderEnded {
                order_id: "1-a".to_owned(),
                sale_id: 1,
                user_id: "ana".to_owned(),
                quantity: 1,
                end,
                reason: None,
                at: Utc::now(),
            },
            trace_id: String::new(),
        };
        let mut written = Written::default();
        written.orders.ended = vec![
            end(OrderEnd::Paid),
            end(OrderEnd::Paid),
            end(OrderEnd::Expired),
        ];
        written.orders.ends_found = vec![end(OrderEnd::Cancelled)];
        written.orders.ends_stale = vec![end(OrderEnd::Cancelled)];
        written.orders.ends_parked = 2;
        written.orders.ends_unparked = 1;
        written.coupons.parked = 1;
        let counts = counts(&written, [0; Reason::COUNT]);
        let by_end = (
            counts.orders_cancelled,
            counts.orders_expired,
            counts.orders_paid,
        );
        assert_eq!(by_end, (0, 1, 2), "found and stale ends are not stored now");
        assert_eq!(counts.duplicates, 2);
        assert_eq!(
            (counts.order_ends_parked, counts.order_ends_unparked),
            (2, 1)
        );
        assert_eq!(
            (counts.parked, counts.unparked),
            (3, 1),
            "in the totals too"
        );
    }
}
