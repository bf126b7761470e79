//! Giving a use of points back, once: from Redis while it holds the use, from the ledger in
//! MySQL when it no longer does; the use's room on its order is freed.

use fred::prelude::HashesInterface;

use crate::app::App;
use crate::failure::Failure;
use crate::orders::discount::OrderDiscount;
use crate::points::actions::{self, Cancel, CancelRequest};
use crate::points::cache::{self, UserPoints};
use crate::points::ledger;
use crate::points::spend::{MISS_RETRIES, cache_kept_disappearing};

/// What a cancellation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refund {
    /// Given back (now, or before: a retried cancel answers the same).
    Cancelled {
        /// The refund's txid.
        refund_txid: String,
        /// Points given back.
        refunded: i64,
        /// The balance now.
        balance: i64,
    },
    /// No such use of the caller's.
    NotFound,
    /// The system of record refused the use: nothing to give back.
    Rejected,
    /// The bucket's outbox is over its bound.
    Overloaded,
}

/// Gives the caller's use `use_txid` back.
pub async fn cancel_use(
    app: &App,
    user_id: &str,
    use_txid: &str,
    trace_id: &str,
) -> Result<Refund, Failure> {
    let Some(refund_txid) = valid_use_txid(use_txid)
        .then(|| flashgate_events::refund_txid(use_txid))
        .flatten()
    else {
        return Ok(Refund::NotFound);
    };
    let user = UserPoints::new(app.prefix(), user_id);
    let mut request = CancelRequest {
        user: &user,
        use_txid,
        refund_txid: &refund_txid,
        trace_id,
        outbox_max: app.settings.gateway.outbox_max_len,
        record_ttl_secs: app.settings.points.use_record_ttl_secs,
        from_mysql: None,
    };
    // The use's order, from the ledger when Redis no longer has the use.
    let mut stored_order: Option<String> = None;
    let mut outcome = Cancel::Miss;
    for _ in 0..MISS_RETRIES {
        outcome = actions::cancel(&app.redis, &app.scripts.points_cancel, &request)
            .await
            .map_err(Failure::unreachable("points cancel"))?;
        match outcome {
            Cancel::Miss => {
                cache::rebuild(app, &user).await?;
            }
            // Redis no longer has the use (expired record, lost data): MySQL may.
            Cancel::NotFound if request.from_mysql.is_none() => {
                let Some(stored) =
                    ledger::stored_use(&app.db, user.user_id, use_txid, &refund_txid)
                        .await
                        .map_err(Failure::Mysql)?
                else {
                    return Ok(Refund::NotFound);
                };
                stored_order = Some(stored.order_id.clone());
                if stored.amount == 0 {
                    return Ok(Refund::Rejected);
                }
                if stored.refunded {
                    outcome = Cancel::AlreadyCancelled {
                        amount: i64::try_from(stored.amount).unwrap_or(i64::MAX),
                    };
                    break;
                }
                request.from_mysql = Some((stored.amount, stored.order_id));
            }
            _ => break,
        }
    }
    let refunded = match outcome {
        Cancel::Cancelled { amount, .. } | Cancel::AlreadyCancelled { amount } => amount,
        Cancel::NotFound => return Ok(Refund::NotFound),
        Cancel::Overloaded => return Ok(Refund::Overloaded),
        Cancel::Miss => return Err(cache_kept_disappearing()),
    };
    // The use's room on its order is free again. Released once whatever the retries; a
    // failure answers 503, and the retried cancel (`already cancelled`) releases it.
    let order_id: Option<String> = match stored_order {
        Some(order_id) => Some(order_id),
        None => app
            .redis
            .hget(user.keys.use_record(use_txid), "order_id")
            .await
            .map_err(Failure::unreachable("points cancel"))?,
    };
    if let Some(hold) = order_id.and_then(|o| OrderDiscount::points(app.prefix(), &o, use_txid)) {
        hold.release(&app.redis, &app.scripts.order_discount, None)
            .await
            .map_err(Failure::unreachable("points cancel"))?;
    }
    let balance = match outcome {
        Cancel::Cancelled { balance, .. } => balance,
        _ => cache::balance(app, &user).await?,
    };
    Ok(Refund::Cancelled {
        refund_txid,
        refunded,
        balance,
    })
}

/// `use-` and 32 lowercase hex digits: the txids this gateway gives out.
fn valid_use_txid(txid: &str) -> bool {
    txid.strip_prefix("use-").is_some_and(|id| {
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_use_txids_of_this_gateway_are_accepted() {
        let txid = format!("use-{}", uuid::Uuid::now_v7().simple());
        assert!(valid_use_txid(&txid));
        assert!(!valid_use_txid("use-"));
        assert!(!valid_use_txid(&txid.to_uppercase()));
        assert!(!valid_use_txid(&txid.replace("use-", "refund-")));
        assert!(!valid_use_txid(&format!("{txid}0")));
    }
}
