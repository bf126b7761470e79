//! The saga's steps on an order's record in Redis, through the gateway's library (one
//! `EVALSHA` of `lua/order_close.lua` each, safe to repeat): paid after a charge, cancelled
//! after a decline, expired at give-up, and a paid order's cancel finished after its refund.
//!
//! A cancelled or expired order's coupon and points are given back by the gateways' sweeper
//! when its give-back is due (`lua/order_close.lua` lists them in `compensate`); the units,
//! the buyer's count and the restock message are the script's own.

use flashgate_events::OrderEnd;
use flashgate_gateway::lifecycle::close::{self, CloseRequest, Closing};
use flashgate_gateway::scripts::Scripts;
use fred::prelude::Pool;

use crate::steps::{OrderAnswer, PAYMENT_DECLINED, PAYMENT_UNANSWERED};

/// The reason an order paid through the saga carries.
const PAID_BY_PROVIDER: &str = "payment_completed";

/// Redis, the scripts and the key prefix of the gateways.
#[derive(Clone)]
pub struct Orders {
    /// The gateways' Redis (primary through Sentinel, as they connect).
    pub redis: Pool,
    /// The gateway's scripts, loaded at start (reloaded on `NOSCRIPT`).
    pub scripts: Scripts,
    /// `redis.key_prefix`.
    pub prefix: String,
    /// How long after an end the sweeper's own pass over its give-backs is due (as the
    /// gateway's: twice `gateway.request_timeout_ms`).
    pub settle_ms: u64,
}

impl Orders {
    /// `pay`: the charge went through. An order found paid before is this saga's doing only
    /// when it carries the saga's reason (a retry after a crash); paid otherwise (a manager's
    /// mark-paid while the charge was in flight) it reads as `Final`: the charge is refunded.
    pub async fn pay(
        &self,
        order_id: &str,
        trace_id: &str,
    ) -> Result<OrderAnswer, fred::error::Error> {
        let closing = self
            .close(order_id, OrderEnd::Paid, PAID_BY_PROVIDER, trace_id)
            .await?;
        Ok(pay_answer(&closing))
    }

    /// `cancel` with reason `payment_declined`: units and discounts back.
    pub async fn cancel_declined(
        &self,
        order_id: &str,
        trace_id: &str,
    ) -> Result<OrderAnswer, fred::error::Error> {
        self.end(order_id, OrderEnd::Cancelled, PAYMENT_DECLINED, trace_id)
            .await
    }

    /// `expire` with reason `payment_unanswered` (due at pay_by + grace while paying).
    pub async fn expire_unanswered(
        &self,
        order_id: &str,
        trace_id: &str,
    ) -> Result<OrderAnswer, fred::error::Error> {
        self.end(order_id, OrderEnd::Expired, PAYMENT_UNANSWERED, trace_id)
            .await
    }

    /// `refunded`: a paid order being cancelled got its money back; it ends `cancelled`
    /// (with the reason its cancel gave), its units and discounts back.
    pub async fn finish_cancelled_refund(
        &self,
        order_id: &str,
        trace_id: &str,
    ) -> Result<OrderAnswer, fred::error::Error> {
        let closing = close::refunded(
            &self.redis,
            &self.scripts.order_close,
            &self.prefix,
            order_id,
            trace_id,
            self.settle_ms,
        )
        .await?;
        Ok(answer(&closing))
    }

    async fn end(
        &self,
        order_id: &str,
        end: OrderEnd,
        reason: &str,
        trace_id: &str,
    ) -> Result<OrderAnswer, fred::error::Error> {
        let closing = self.close(order_id, end, reason, trace_id).await?;
        Ok(answer(&closing))
    }

    async fn close(
        &self,
        order_id: &str,
        end: OrderEnd,
        reason: &str,
        trace_id: &str,
    ) -> Result<Closing, fred::error::Error> {
        let request = CloseRequest {
            order_id,
            end,
            caller: None,
            reason,
            trace_id,
            idempotency: None,
            settle_ms: self.settle_ms,
        };
        close::close(
            &self.redis,
            &self.scripts.order_close,
            &self.prefix,
            &request,
        )
        .await
    }
}

/// `pay`'s answer: paid before with another reason than the saga's is not the saga's payment.
fn pay_answer(closing: &Closing) -> OrderAnswer {
    match closing {
        Closing::Already(record) if record.reason != PAID_BY_PROVIDER => OrderAnswer::Final,
        other => answer(other),
    }
}

/// The script's answer without the record. `Refunding` (a cancel met a paid order: not asked
/// by the saga) and `Replayed`/`KeyReused` (no key is sent) read as `Final`: the order is not
/// where the saga's step expects it.
fn answer(closing: &Closing) -> OrderAnswer {
    match closing {
        Closing::Closed(_) => OrderAnswer::Closed,
        Closing::Already(_) => OrderAnswer::Already,
        Closing::NotDue(_) => OrderAnswer::NotDue,
        Closing::WindowClosed(_) => OrderAnswer::WindowClosed,
        Closing::NotFound => OrderAnswer::NotFound,
        Closing::Final(_) | Closing::Refunding(_) | Closing::Replayed(_) | Closing::KeyReused => {
            OrderAnswer::Final
        }
    }
}

#[cfg(test)]
mod tests {
    use flashgate_gateway::lifecycle::close::Record;

    use super::*;

    fn paid(reason: &str) -> Record {
        Record {
            state: "paid".to_owned(),
            ended_at: None,
            reason: reason.to_owned(),
            user_id: "ann".to_owned(),
            quantity: 1,
            pay_by: None,
        }
    }

    #[test]
    fn an_order_paid_before_by_the_saga_is_its_payment_and_one_paid_otherwise_is_not() {
        let ours = Closing::Already(paid(PAID_BY_PROVIDER));
        assert_eq!(pay_answer(&ours), OrderAnswer::Already);
        let outside = Closing::Already(paid("paid_outside_flashgate"));
        assert_eq!(pay_answer(&outside), OrderAnswer::Final);
        assert_eq!(
            pay_answer(&Closing::Closed(paid(PAID_BY_PROVIDER))),
            OrderAnswer::Closed
        );
        assert_eq!(pay_answer(&Closing::NotFound), OrderAnswer::NotFound);
        assert_eq!(answer(&Closing::Refunding(paid("x"))), OrderAnswer::Final);
    }
}
