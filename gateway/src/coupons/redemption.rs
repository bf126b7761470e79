//! Redeeming a coupon on an order and undoing that: one `EVALSHA` each
//! (`lua/redeem_coupon.lua`, `lua/cancel_redemption.lua`), and their replies as values.

use flashgate_events::ids;
use fred::prelude::{Pool, Value};

use crate::keys::PolicyKeys;
use crate::scripts::{Script, int, reply_text, unexpected_reply};

/// What a redeem or cancel script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// Redeemed on the order / redemption undone (for that order).
    Done {
        /// The order concerned.
        order_id: String,
    },
    /// Not in Redis, or not this user's.
    NotFound,
    /// Redeemed already (on `order_id`).
    AlreadyRedeemed {
        /// The order it is redeemed on.
        order_id: String,
    },
    /// Cancel of a coupon that is not redeemed.
    NotRedeemed,
    /// Past its expiry.
    Expired,
    /// The policy's outbox is over its bound.
    Overloaded,
}

fn parse_redemption(
    script: &str,
    reply: &[Value],
    order_id: &str,
) -> Result<Redemption, fred::error::Error> {
    let code = reply_text(reply, 0);
    Ok(match code.as_str() {
        "redeemed" => Redemption::Done {
            order_id: order_id.to_owned(),
        },
        "cancelled" => Redemption::Done {
            order_id: reply_text(reply, 1),
        },
        "not_found" => Redemption::NotFound,
        "already_redeemed" => Redemption::AlreadyRedeemed {
            order_id: reply_text(reply, 1),
        },
        "not_redeemed" => Redemption::NotRedeemed,
        "expired" => Redemption::Expired,
        "overloaded" => Redemption::Overloaded,
        other => return Err(unexpected_reply(script, other)),
    })
}

/// The policy a coupon id belongs to (`<policy_id>-<uuid>`).
pub fn policy_of(coupon_id: &str) -> Option<u64> {
    let (policy, rest) = coupon_id.split_once('-')?;
    (!rest.is_empty() && coupon_id.len() <= ids::COUPON_ID_MAX_LEN)
        .then(|| policy.parse().ok())
        .flatten()
}

/// One redeem or cancel of one coupon.
#[derive(Debug, Clone)]
pub struct CouponAction<'a> {
    /// The keys of the coupon's policy.
    pub keys: &'a PolicyKeys,
    /// The coupon.
    pub coupon_id: &'a str,
    /// The caller, who must hold it.
    pub user_id: &'a str,
    /// Trace id of the request.
    pub trace_id: &'a str,
    /// Refuse (`overloaded`) when the outbox holds this many entries: Kafka is behind, and the
    /// backlog must not grow without bound.
    pub outbox_max: u64,
}

/// Applies the coupon to `order_id` with `discount`; of concurrent calls exactly one wins.
pub async fn redeem(
    redis: &Pool,
    script: &Script,
    action: &CouponAction<'_>,
    order_id: &str,
    discount: u64,
) -> Result<Redemption, fred::error::Error> {
    let names = vec![
        action.keys.coupon(action.coupon_id),
        action.keys.outbox.clone(),
    ];
    let args: Vec<Value> = vec![
        action.user_id.into(),
        order_id.into(),
        int(discount),
        action.trace_id.into(),
        int(action.outbox_max),
    ];
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    parse_redemption("redeem_coupon", &reply, order_id)
}

/// Undoes the coupon's redemption: it is `issued` again.
pub async fn cancel_redemption(
    redis: &Pool,
    script: &Script,
    action: &CouponAction<'_>,
) -> Result<Redemption, fred::error::Error> {
    // The call's own id: a re-send of this very call (the Redis client's, after a closed
    // connection) is answered as the first run was; another call finds `not_redeemed`.
    let call_id = uuid::Uuid::now_v7().simple().to_string();
    run_cancel(redis, script, action, &call_id, "").await
}

/// Gives back the coupon redeemed on the ended order `order_id`: undoes its redemption only
/// if it is on that order. Every attempt for one order is one call (its id derives from the
/// order), so a retry after a lost answer is answered as the first attempt was.
pub async fn give_back(
    redis: &Pool,
    script: &Script,
    action: &CouponAction<'_>,
    order_id: &str,
) -> Result<Redemption, fred::error::Error> {
    let call_id = format!("order-end:{order_id}");
    run_cancel(redis, script, action, &call_id, order_id).await
}

async fn run_cancel(
    redis: &Pool,
    script: &Script,
    action: &CouponAction<'_>,
    call_id: &str,
    only_on_order: &str,
) -> Result<Redemption, fred::error::Error> {
    let names = vec![
        action.keys.coupon(action.coupon_id),
        action.keys.outbox.clone(),
    ];
    let args: Vec<Value> = vec![
        action.user_id.into(),
        action.trace_id.into(),
        int(action.outbox_max),
        call_id.into(),
        only_on_order.into(),
    ];
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    parse_redemption("cancel_redemption", &reply, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripts::tests::reply;

    #[test]
    fn change_replies_name_the_order_concerned() {
        assert_eq!(
            parse_redemption("redeem", &reply(&["redeemed", "2", "1"]), "9-o").unwrap(),
            Redemption::Done {
                order_id: "9-o".into()
            }
        );
        assert_eq!(
            parse_redemption("cancel", &reply(&["cancelled", "9-o", "3", "1"]), "").unwrap(),
            Redemption::Done {
                order_id: "9-o".into()
            }
        );
        assert_eq!(
            parse_redemption("redeem", &reply(&["already_redeemed", "8-o"]), "9-o").unwrap(),
            Redemption::AlreadyRedeemed {
                order_id: "8-o".into()
            }
        );
    }

    #[test]
    fn a_coupon_id_names_its_policy() {
        assert_eq!(policy_of("42-0190abcd"), Some(42));
        assert_eq!(policy_of("42-"), None);
        assert_eq!(policy_of("x-1"), None);
        assert_eq!(policy_of("42"), None);
    }
}
