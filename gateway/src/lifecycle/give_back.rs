//! Giving back the coupons and points of a cancelled or expired order: each reference that
//! `lua/order_close.lua` copied into the sale's `compensate` hash is undone once, keyed by the
//! order, and the entry is removed when all of them are.
//!
//! Each step is idempotent on its own: a coupon's redemption is undone only if it is still on
//! this order, by a call whose id derives from the order (a retry is the same call); a use of
//! points is given back once whatever the retries (`points_cancel.lua`). So the live request
//! may run the give-back at once, the sweeper again when it is due, and a second gateway at
//! the same time: nothing is given back twice.

use chrono::{DateTime, Utc};
use fred::prelude::HashesInterface;

use crate::app::App;
use crate::coupons::redemption::{self, CouponAction, Redemption, policy_of};
use crate::keys::{PolicyKeys, SaleKeys};
use crate::points::refund::{Refund, cancel_use};

/// One entry of a sale's `compensate` hash: `due_ms\nuser\nref\nref...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    /// The ended order.
    pub order_id: String,
    /// When the sweeper's own pass is due (after any request in flight has landed).
    pub due: Option<DateTime<Utc>>,
    /// The order's buyer, who gets the coupons and points back.
    pub user_id: String,
    /// `cpn:<coupon id>` and `pts:<use txid>` references.
    pub refs: Vec<String>,
}

impl Owed {
    /// Reads an entry; `None` when it makes no sense (it is then dropped, with a log line).
    pub fn parse(order_id: &str, value: &str) -> Option<Self> {
        let mut lines = value.split('\n');
        let due = lines
            .next()?
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis);
        let user_id = lines.next()?.to_owned();
        if user_id.is_empty() {
            return None;
        }
        Some(Self {
            order_id: order_id.to_owned(),
            due,
            user_id,
            refs: lines.filter(|r| !r.is_empty()).map(str::to_owned).collect(),
        })
    }
}

/// How one reference's give-back went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Given back now or before, or nothing to give back (never landed, undone by the
    /// shopper, expired coupon, a use MySQL refused).
    Done,
    /// Could not be done now (Redis, MySQL, an outbox over its bound): try again later.
    Retry,
}

/// Gives back everything `owed` names; true when every step is done.
pub async fn give_back(app: &App, owed: &Owed, trace_id: &str) -> bool {
    let mut all_done = true;
    for reference in &owed.refs {
        let step = if let Some(coupon_id) = reference.strip_prefix("cpn:") {
            coupon(app, owed, coupon_id, trace_id).await
        } else if let Some(txid) = reference.strip_prefix("pts:") {
            points(app, owed, txid, trace_id).await
        } else {
            tracing::warn!(
                order_id = owed.order_id,
                reference,
                "unknown discount reference on an ended order; skipped"
            );
            Step::Done
        };
        app.metrics.observe_lifecycle(match step {
            Step::Done => "give_back_done",
            Step::Retry => "give_back_retry",
        });
        all_done &= step == Step::Done;
    }
    all_done
}

async fn coupon(app: &App, owed: &Owed, coupon_id: &str, trace_id: &str) -> Step {
    let Some(policy_id) = policy_of(coupon_id) else {
        return Step::Done;
    };
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    let action = CouponAction {
        keys: &keys,
        coupon_id,
        user_id: &owed.user_id,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
    };
    match redemption::give_back(
        &app.redis,
        &app.scripts.cancel_redemption,
        &action,
        &owed.order_id,
    )
    .await
    {
        Ok(Redemption::Overloaded) => Step::Retry,
        Ok(outcome) => {
            if matches!(outcome, Redemption::Done { .. }) {
                tracing::info!(
                    order_id = owed.order_id,
                    coupon_id,
                    "coupon of an ended order given back"
                );
            }
            Step::Done
        }
        Err(err) => {
            tracing::warn!(order_id = owed.order_id, coupon_id, error = %err, "giving a coupon back failed; retried later");
            Step::Retry
        }
    }
}

async fn points(app: &App, owed: &Owed, txid: &str, trace_id: &str) -> Step {
    match cancel_use(app, &owed.user_id, txid, trace_id).await {
        Ok(Refund::Overloaded) => Step::Retry,
        Ok(outcome) => {
            if let Refund::Cancelled { refunded, .. } = outcome {
                tracing::info!(
                    order_id = owed.order_id,
                    txid,
                    refunded,
                    "points of an ended order given back"
                );
            }
            Step::Done
        }
        Err(err) => {
            tracing::warn!(order_id = owed.order_id, txid, error = %err, "giving points back failed; retried later");
            Step::Retry
        }
    }
}

/// Runs the give-back of `order_id` of `sale_id` at once, if the order owes any (the live
/// request's pass; the sweeper makes its own when the entry is due, and removes it).
pub async fn give_back_now(app: &App, sale_id: u64, order_id: &str, trace_id: &str) {
    let keys = SaleKeys::new(app.prefix(), sale_id);
    let entry: Result<Option<String>, _> = app.redis.hget(&keys.compensate, order_id).await;
    match entry {
        Ok(Some(value)) => {
            if let Some(owed) = Owed::parse(order_id, &value) {
                give_back(app, &owed, trace_id).await;
            }
        }
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(order_id, error = %err, "reading an order's give-backs failed; the sweeper does them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_its_due_time_buyer_and_references() {
        let owed = Owed::parse("7-a", "1700000000000\nann\ncpn:3-x\npts:use-1").unwrap();
        assert_eq!(owed.user_id, "ann");
        assert_eq!(owed.refs, ["cpn:3-x", "pts:use-1"]);
        assert_eq!(
            owed.due.map(|d| d.timestamp_millis()),
            Some(1_700_000_000_000)
        );
        assert_eq!(Owed::parse("7-a", "1\n"), None, "no buyer");
        assert_eq!(Owed::parse("7-a", ""), None);
    }
}
