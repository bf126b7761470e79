//! One claimed payment's steps, as the worker runs them: the calls the decision table asks
//! for (provider, Redis, MySQL, Kafka) and the write after each. [`crate::steps`] decides;
//! this file only calls and writes.

use tokio::sync::watch;

use crate::announce::Announcement;
use crate::backoff;
use crate::metrics::Metrics;
use crate::payment::{Payment, RefundCause, Status, refund_key};
use crate::steps::{self, AfterPay, Found, Move, RefundReply, Step, Then};
use crate::store::{Claimed, Next};
use crate::worker::{Stop, Worker};

impl Worker {
    /// The steps of one payment, each written before the next.
    pub(crate) async fn steps(
        &self,
        claim: &Claimed,
        owner: &str,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), Stop> {
        let mut payment = claim.payment.clone();
        // The row as this claim last wrote it: the fence of the next write. It differs from
        // `payment` while a move is held back (`steps::may_hold_back`).
        let mut written = payment.clone();
        loop {
            if *shutdown.borrow() {
                return Err(Stop::Shutdown);
            }
            let overdue = claim.now() >= payment.give_up_at;
            let step = steps::next_step(&payment, overdue);
            let moved = match step {
                Step::GiveUp => steps::give_up(&payment),
                Step::LookUp(key) => match self.provider.lookup(&key).await {
                    Ok(found) => match steps::after_lookup(&payment, &found) {
                        Some(moved) => moved,
                        None => {
                            let Some(keyed) = self.charge_key(claim, owner, &payment).await? else {
                                return Ok(());
                            };
                            let moved = self.charge(&keyed).await;
                            written = keyed;
                            moved
                        }
                    },
                    Err(_) => steps::retry(&payment),
                },
                Step::Charge(_) => {
                    let Some(keyed) = self.charge_key(claim, owner, &payment).await? else {
                        return Ok(());
                    };
                    let moved = self.charge(&keyed).await;
                    written = keyed;
                    moved
                }
                Step::Pay => self.pay(&payment).await?,
                Step::Cancel => match self
                    .orders
                    .cancel_declined(&payment.order_id, &payment.trace_id)
                    .await
                {
                    Ok(answer) => steps::after_cancel(&payment, answer),
                    Err(err) => self.redis_failed(&payment, &err),
                },
                Step::Expire(key) => self.give_up_order(&payment, key.as_deref()).await,
                Step::Refund(charge) => {
                    let reply = self
                        .provider
                        .refund(&charge, &refund_key(&payment.order_id))
                        .await;
                    tracing::debug!(charge, reply = ?reply, "refund answered");
                    if let RefundReply::Refused(why) = &reply {
                        tracing::error!(
                            order_id = payment.order_id,
                            charge,
                            why,
                            "the provider refuses to refund a charge it said succeeded; \
                             retrying with backoff, an operator should look"
                        );
                    }
                    steps::after_refund(&payment, &reply)
                }
                Step::EndRefund(RefundCause::Cancel) => {
                    match self
                        .orders
                        .finish_cancelled_refund(&payment.order_id, &payment.trace_id)
                        .await
                    {
                        Ok(_) => steps::refunded(&payment),
                        Err(err) => self.redis_failed(&payment, &err),
                    }
                }
                Step::EndRefund(RefundCause::Late) => steps::refunded(&payment),
                Step::Announce => return self.announce(claim, owner, payment).await,
                Step::Done => Move {
                    payment: payment.clone(),
                    then: Then::Go,
                },
            };
            if steps::may_hold_back(&written, &moved) {
                // Not written: the next step's write carries it (one commit fewer).
                payment = moved.payment;
                continue;
            }
            match self.save(claim, owner, &written, moved).await? {
                Some(next) => {
                    written = next.clone();
                    payment = next;
                }
                None => return Ok(()),
            }
        }
    }

    /// Writes the next charge attempt's number and key before the call: whatever becomes of
    /// the call, the key is on record and looked up before any other attempt. `None`: the
    /// payment was let go.
    async fn charge_key(
        &self,
        claim: &Claimed,
        owner: &str,
        payment: &Payment,
    ) -> Result<Option<Payment>, Stop> {
        let keyed = Move {
            payment: steps::before_charge(payment, payment.attempts + 1),
            then: Then::Go,
        };
        self.save(claim, owner, payment, keyed).await
    }

    /// The charge call of the attempt `keyed` names, and the move its answer makes.
    async fn charge(&self, keyed: &Payment) -> Move {
        Metrics::inc(&self.metrics.attempts);
        let key = keyed.charge_key.as_deref().unwrap_or_default();
        tracing::debug!(
            attempt = keyed.attempts,
            key,
            amount = keyed.amount,
            "charge attempt"
        );
        let reply = self
            .provider
            .charge(key, keyed.amount, &keyed.payment_token, &keyed.order_id)
            .await;
        tracing::debug!(attempt = keyed.attempts, reply = ?reply, "charge answered");
        steps::after_charge(keyed, &reply)
    }

    /// Charged: mark the order paid in Redis; refund when it cannot be.
    async fn pay(&self, payment: &Payment) -> Result<Move, Stop> {
        let answer = match self.orders.pay(&payment.order_id, &payment.trace_id).await {
            Ok(answer) => answer,
            Err(err) => return Ok(self.redis_failed(payment, &err)),
        };
        Ok(match steps::after_pay(payment, answer) {
            AfterPay::Done(moved) | AfterPay::Refund(moved) | AfterPay::Retry(moved) => moved,
            AfterPay::ExpireThenRefund(moved) => {
                match self
                    .orders
                    .expire_unanswered(&payment.order_id, &payment.trace_id)
                    .await
                {
                    Ok(_) => moved,
                    Err(err) => self.redis_failed(payment, &err),
                }
            }
            AfterPay::AskMysql => match self.store.order_status(&payment.order_id).await {
                Ok(status) => steps::after_pay_not_found(payment, status.as_deref()),
                Err(err) => return Err(Stop::Database(err)),
            },
        })
    }

    /// Giving up: the order expires in Redis, then the outstanding key (if any) is looked up.
    async fn give_up_order(&self, payment: &Payment, key: Option<&str>) -> Move {
        match self
            .orders
            .expire_unanswered(&payment.order_id, &payment.trace_id)
            .await
        {
            Ok(answer) => {
                if let Some(moved) = steps::after_expire(payment, answer) {
                    return moved;
                }
            }
            Err(err) => return self.redis_failed(payment, &err),
        }
        let found = match key {
            Some(key) => match self.provider.lookup(key).await {
                Ok(found) => found,
                Err(_) => return steps::retry(payment),
            },
            None => Found::Nothing,
        };
        steps::after_give_up(payment, &found)
    }

    /// Hands a final payment, written, to the announcer and frees this slot; the announcer
    /// records it announced (or puts it off to be claimed again). At shutdown, when the
    /// announcer is gone, the payment is let go unannounced for the next claim.
    async fn announce(&self, claim: &Claimed, owner: &str, payment: Payment) -> Result<(), Stop> {
        let announcement = Announcement {
            owner: owner.to_owned(),
            payment,
            claimed_at: claim.claimed_at,
            claimed: claim.claimed,
        };
        match self.announcer.submit(announcement).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Stop::Shutdown),
        }
    }

    fn redis_failed(&self, payment: &Payment, err: &fred::error::Error) -> Move {
        Metrics::inc(&self.metrics.redis_errors);
        tracing::warn!(order_id = payment.order_id, error = %err, "a Redis step failed; retrying");
        steps::retry(payment)
    }

    /// Writes `moved` over `before`; the row to go on with, or `None` when the payment is
    /// put off (a retry), done, or let go.
    async fn save(
        &self,
        claim: &Claimed,
        owner: &str,
        before: &Payment,
        moved: Move,
    ) -> Result<Option<Payment>, Stop> {
        let after = moved.payment;
        let next = match moved.then {
            Then::Retry => {
                Metrics::inc(&self.metrics.retries);
                let delay = self
                    .backoff
                    .delay(after.retries.saturating_sub(1), backoff::random());
                let capped = after.status == Status::Pending;
                Next::At(backoff::retry_at(
                    claim.now(),
                    delay,
                    after.give_up_at,
                    capped,
                ))
            }
            Then::Go if after.status.is_final() && after.published => Next::Never,
            Then::Go => Next::Keep,
        };
        match self.store.save(owner, before, &after, next).await {
            Ok(true) => {}
            Ok(false) => return Err(Stop::Lost),
            Err(err) => return Err(Stop::Database(err)),
        }
        tracing::debug!(
            status = after.status.as_str(),
            attempts = after.attempts,
            put_off = matches!(next, Next::At(_)),
            "payment step saved"
        );
        if after.status.is_final() && after.status != before.status {
            self.metrics.outcome(after.status.as_str());
            tracing::info!(
                order_id = after.order_id,
                status = after.status.as_str(),
                attempts = after.attempts,
                "payment ended"
            );
        }
        Ok(match next {
            Next::Keep => Some(after),
            Next::At(_) | Next::Never => None,
        })
    }
}
