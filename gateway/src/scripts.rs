//! The Lua scripts, compiled into the binary, run by `EVALSHA` through fred's
//! `Script::evalsha_with_reload` (as the persister and the batch jobs run theirs): after a Redis
//! restart or failover (`NOSCRIPT`) a script is loaded again and the call retried once.

use fred::error::{Error, ErrorKind};
use fred::prelude::{FromValue, Pool, Value};
use fred::types::scripts::Script as LuaScript;
use fred::types::{MultipleKeys, MultipleValues};

/// One script, known to Redis by the SHA1 of its source.
#[derive(Debug, Clone)]
pub struct Script(LuaScript);

impl Script {
    fn new(source: &'static str) -> Self {
        Self(LuaScript::from_lua(source))
    }

    /// A script that judges rate limits in the same call: the GCRA function of
    /// `lua/rate_limit.lua` (its text above `-- end of prelude`) put in front of `source`.
    fn with_rate_limit(source: &'static str) -> Self {
        let prelude = RATE_LIMIT
            .split_once("\n-- end of prelude\n")
            .map_or(RATE_LIMIT, |(prelude, _)| prelude);
        Self(LuaScript::from_lua(format!("{prelude}\n{source}")))
    }

    /// `SCRIPT LOAD` on the primary.
    pub async fn load(&self, redis: &Pool) -> Result<(), Error> {
        self.0.load(redis.next()).await
    }

    /// `EVALSHA`, reloading the script once if Redis lost it.
    pub async fn run<R, K, V>(&self, redis: &Pool, keys: K, args: V) -> Result<R, Error>
    where
        R: FromValue,
        K: Into<MultipleKeys> + Send,
        V: TryInto<MultipleValues> + Send,
        V::Error: Into<Error> + Send,
    {
        self.0.evalsha_with_reload(redis.next(), keys, args).await
    }
}

/// Every script the gateway runs.
#[derive(Debug, Clone)]
pub struct Scripts {
    /// `lua/purchase.lua`: admit one purchase (rate limits judged in the same call).
    pub purchase: Script,
    /// `lua/outbox_ack.lua`: acknowledge and delete relayed outbox entries.
    pub outbox_ack: Script,
    /// `lua/outbox_retire.lua`: may the relay stop watching an outbox (empty and over)?
    pub outbox_retire: Script,
    /// `lua/load_sale.lua`: put a sale into Redis unless it is there.
    pub load_sale: Script,
    /// `lua/load_holds.lua`: hold again a page of a restored sale's open orders.
    pub load_holds: Script,
    /// `lua/claim_coupon.lua`: claim one coupon of a policy (rate limits judged in the same call).
    pub claim_coupon: Script,
    /// `lua/redeem_coupon.lua`: apply a coupon to an order, at most once.
    pub redeem_coupon: Script,
    /// `lua/cancel_redemption.lua`: undo a redemption.
    pub cancel_redemption: Script,
    /// `lua/load_policy.lua`: put a coupon policy into Redis unless it is there.
    pub load_policy: Script,
    /// `lua/load_coupon.lua`: put a persisted coupon back into Redis unless it is there.
    pub load_coupon: Script,
    /// `lua/policy_cleanup.lua`: remove the keys of a coupon policy whose life is over.
    pub policy_cleanup: Script,
    /// `lua/points_use.lua`: spend points.
    pub points_use: Script,
    /// `lua/points_cancel.lua`: give a use back.
    pub points_cancel: Script,
    /// `lua/points_fill.lua`: rebuild a point cache from MySQL.
    pub points_fill: Script,
    /// `lua/order_discount.lua`: reserve or release a discount on an order, capped at its amount.
    pub order_discount: Script,
    /// `lua/order_close.lua`: end an open order (cancelled, expired, paid), once.
    pub order_close: Script,
    /// `lua/sale_cleanup.lua`: remove the keys of a sale whose life is over.
    pub sale_cleanup: Script,
    /// `lua/queue_open.lua`: put a sale's waiting room into Redis unless it is there.
    pub queue_open: Script,
    /// `lua/queue_join.lua`: a shopper joins a waiting room, once.
    pub queue_join: Script,
    /// `lua/queue_ticket.lua`: a ticket as its owner polls it.
    pub queue_ticket: Script,
    /// `lua/queue_draw.lua`: apply the draw at the start.
    pub queue_draw: Script,
    /// `lua/queue_admit.lua`: one admitter tick of a waiting room.
    pub queue_admit: Script,
    /// `lua/queue_status.lua`: a waiting room's live counts.
    pub queue_status: Script,
    /// `lua/rate_limit.lua`: judge the rate limits of a route without a script of its own.
    pub rate_limit: Script,
    /// `lua/revoke_token.lua`: record a token revocation and announce it.
    pub revoke_token: Script,
    /// `lua/read_counters.lua`: a sale's or policy's left and given-out counters, together.
    pub read_counters: Script,
}

/// `lua/rate_limit.lua`: run on its own, and its prelude folded into the purchase and claim.
const RATE_LIMIT: &str = include_str!("../../lua/rate_limit.lua");

macro_rules! script {
    ($name:literal) => {
        Script::new(include_str!(concat!("../../lua/", $name, ".lua")))
    };
}

impl Scripts {
    /// The scripts of `lua/`.
    pub fn new() -> Self {
        Self {
            purchase: Script::with_rate_limit(include_str!("../../lua/purchase.lua")),
            outbox_ack: script!("outbox_ack"),
            outbox_retire: script!("outbox_retire"),
            load_sale: script!("load_sale"),
            load_holds: script!("load_holds"),
            claim_coupon: Script::with_rate_limit(include_str!("../../lua/claim_coupon.lua")),
            redeem_coupon: script!("redeem_coupon"),
            cancel_redemption: script!("cancel_redemption"),
            load_policy: script!("load_policy"),
            load_coupon: script!("load_coupon"),
            policy_cleanup: script!("policy_cleanup"),
            points_use: script!("points_use"),
            points_cancel: script!("points_cancel"),
            points_fill: script!("points_fill"),
            order_discount: script!("order_discount"),
            order_close: script!("order_close"),
            sale_cleanup: script!("sale_cleanup"),
            queue_open: script!("queue_open"),
            queue_join: script!("queue_join"),
            queue_ticket: script!("queue_ticket"),
            queue_draw: script!("queue_draw"),
            queue_admit: script!("queue_admit"),
            queue_status: script!("queue_status"),
            rate_limit: Script::new(RATE_LIMIT),
            revoke_token: script!("revoke_token"),
            read_counters: script!("read_counters"),
        }
    }

    /// Loads every script (at start).
    pub async fn load_all(&self, redis: &Pool) -> Result<(), Error> {
        for script in [
            &self.purchase,
            &self.outbox_ack,
            &self.outbox_retire,
            &self.load_sale,
            &self.load_holds,
            &self.claim_coupon,
            &self.redeem_coupon,
            &self.cancel_redemption,
            &self.load_policy,
            &self.load_coupon,
            &self.policy_cleanup,
            &self.points_use,
            &self.points_cancel,
            &self.points_fill,
            &self.order_discount,
            &self.order_close,
            &self.sale_cleanup,
            &self.queue_open,
            &self.queue_join,
            &self.queue_ticket,
            &self.queue_draw,
            &self.queue_admit,
            &self.queue_status,
            &self.rate_limit,
            &self.revoke_token,
        ] {
            script.load(redis).await?;
        }
        Ok(())
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

/// Element `index` of a script's reply array as text ("" when absent).
pub fn reply_text(reply: &[Value], index: usize) -> String {
    reply
        .get(index)
        .and_then(Value::as_string)
        .unwrap_or_default()
}

/// Element `index` of a script's reply array as an integer (0 when absent).
pub fn reply_int(reply: &[Value], index: usize) -> i64 {
    reply.get(index).and_then(Value::as_i64).unwrap_or_default()
}

/// A count or an amount as a script argument: Lua's integers are signed, so anything past
/// `i64::MAX` is sent as `i64::MAX`.
pub fn int(value: u64) -> Value {
    Value::from(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Redis errors that say a command was refused before it ran (it changed nothing).
const REFUSED_BEFORE_RUNNING: [&str; 7] = [
    "NOSCRIPT",
    "READONLY",
    "OOM",
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "NOREPLICAS",
];

/// Whether a script call that failed may have run in Redis all the same, so that its outcome
/// is unknown: the reply was lost (a timeout, a connection closed after the call was written,
/// the client's write attempts used up) or made no sense, rather than Redis refusing to run
/// it. Every state-changing script is safe to run twice with the same arguments, so the
/// client may retry such a call (with its `Idempotency-Key`) to learn what happened.
pub fn may_have_run(err: &Error) -> bool {
    match err.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Protocol
        | ErrorKind::Parse => true,
        // Error replies of Redis itself, and "Too many failed write attempts".
        ErrorKind::Unknown => !REFUSED_BEFORE_RUNNING
            .iter()
            .any(|code| err.details().starts_with(code)),
        _ => false,
    }
}

/// The error for a reply code a script does not send.
pub fn unexpected_reply(script: &str, code: &str) -> Error {
    Error::new(
        ErrorKind::Parse,
        format!("unexpected {script} script reply `{code}`"),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A script's reply array made of `items`.
    pub fn reply(items: &[&str]) -> Vec<Value> {
        items.iter().map(|s| Value::from(*s)).collect()
    }

    #[test]
    fn only_lost_or_garbled_replies_leave_the_outcome_unknown() {
        for unknown in [
            Error::new(ErrorKind::Timeout, "Request timed out."),
            Error::new(ErrorKind::IO, "Connection Closed"),
            Error::new(ErrorKind::Canceled, "Connection(s) closed."),
            Error::new(ErrorKind::Unknown, "Too many failed write attempts."),
            Error::new(
                ErrorKind::Unknown,
                "ERR user_script:1: Script attempted ...",
            ),
            unexpected_reply("purchase", "bogus"),
        ] {
            assert!(may_have_run(&unknown), "{unknown:?}");
        }
        for refused in [
            Error::new(ErrorKind::Unknown, "NOSCRIPT No matching script."),
            Error::new(
                ErrorKind::Unknown,
                "READONLY You can't write against a read only replica.",
            ),
            Error::new(ErrorKind::Unknown, "BUSY Redis is busy running a script."),
            Error::new(ErrorKind::Routing, "Failed to route command."),
            Error::new(ErrorKind::Backpressure, "Max in-flight commands reached."),
        ] {
            assert!(!may_have_run(&refused), "{refused:?}");
        }
    }
}
