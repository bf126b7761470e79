//! Admission of a purchase: one `EVALSHA` of `lua/purchase.lua`, and its reply as a value.

use fred::prelude::{Pool, Value};

use crate::keys::SaleKeys;
use crate::limits::Armed;
use crate::limits::limiter::Verdict;
use crate::scripts::{Script, int, reply_int, reply_text, unexpected_reply};
use flashgate_config::RateKey;

/// What the purchase script decided. Business outcomes are values, not errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Stock was taken; the order is in the outbox.
    Admitted {
        /// The order's id.
        order_id: String,
        /// Units the buyer got.
        quantity: u32,
        /// Units left in the sale now; -1 when not known (a stored answer replayed).
        remaining: i64,
    },
    /// Not enough stock for this quantity; `remaining` units were left.
    SoldOut {
        /// Units left (0 when the sale is sold out).
        remaining: i64,
        /// A stored answer to an earlier request with the same idempotency key: it tells how
        /// the sale stood then, not how it stands now.
        replayed: bool,
    },
    /// The buyer would exceed the per-user limit.
    LimitExceeded,
    /// Before the start, after the end, or paused.
    NotActive,
    /// No such sale in Redis.
    NotFound,
    /// The sale's outbox is over its bound (Kafka is behind or down).
    Overloaded,
    /// The idempotency key was used with another request.
    KeyReused,
    /// The sale is behind a waiting room and the request carried no valid pass for it.
    QueuePassRequired,
    /// A rate limit refused the purchase (nothing was taken).
    RateLimited {
        /// Which limit: per user or per address.
        key: RateKey,
        /// Microseconds until it would allow the purchase.
        retry_us: u64,
    },
}

impl Admission {
    /// The outcome's label in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Admitted { .. } => "admitted",
            Self::SoldOut { .. } => "sold_out",
            Self::LimitExceeded => "limit_exceeded",
            Self::NotActive => "sale_not_active",
            Self::NotFound => "not_found",
            Self::Overloaded => "overloaded",
            Self::KeyReused => "idempotency_key_reused",
            Self::QueuePassRequired => "queue_pass_required",
            Self::RateLimited { .. } => "rate_limited",
        }
    }
}

/// One purchase to admit.
#[derive(Debug, Clone)]
pub struct PurchaseRequest<'a> {
    /// The sale's keys.
    pub keys: &'a SaleKeys,
    /// The buyer.
    pub user_id: &'a str,
    /// Units wanted.
    pub quantity: u32,
    /// Id to give the order if admitted.
    pub order_id: &'a str,
    /// Trace id of the request.
    pub trace_id: &'a str,
    /// `(user, key)` idempotency key, when the client sent one.
    pub idempotency_key: Option<&'a str>,
    /// Refuse (`overloaded`) when the outbox holds this many entries: Kafka is behind, and the
    /// backlog must not grow without bound.
    pub outbox_max: u64,
    /// How long an idempotent answer is kept, in seconds.
    pub idempotency_ttl_secs: u64,
    /// The gateway verified a `Queue-Pass` for this user and sale (checked in the gateway, so
    /// the script only needs the verdict: no extra round trip).
    pub pass_ok: bool,
    /// The rate limits judged in the same call (their TATs in the sale's buyers hash).
    pub limits: &'a [Armed],
}

/// Runs the purchase script once and reads its reply.
pub async fn admit(
    redis: &Pool,
    script: &Script,
    request: &PurchaseRequest<'_>,
) -> Result<Admission, fred::error::Error> {
    let mut keys = vec![
        request.keys.sale.clone(),
        request.keys.stock.clone(),
        request.keys.buyers.clone(),
        request.keys.outbox.clone(),
        request.keys.orders.clone(),
        request.keys.holds.clone(),
    ];
    if let Some(key) = request.idempotency_key {
        keys.push(request.keys.idempotency(request.user_id, key));
    }
    let fingerprint = format!("quantity={}", request.quantity);
    let mut args: Vec<Value> = vec![
        request.user_id.into(),
        i64::from(request.quantity).into(),
        request.order_id.into(),
        request.trace_id.into(),
        int(request.outbox_max),
        int(request.idempotency_ttl_secs),
        fingerprint.into(),
        if request.pass_ok { "1" } else { "0" }.into(),
        int(request.limits.len() as u64),
    ];
    // The limits after ARGV 9: their rates and whom they limit.
    for limit in request.limits {
        args.extend(limit.folded_args());
    }
    let reply: Vec<Value> = script.run(redis, keys, args).await?;
    if let Some(Verdict::Limited { index, retry_us }) = Verdict::parse(&reply, 0) {
        return Ok(Admission::RateLimited {
            key: request.limits.get(index).map_or(RateKey::User, |l| l.key),
            retry_us,
        });
    }
    parse_reply(&reply, request.quantity)
}

/// Turns the script's reply array into an [`Admission`].
fn parse_reply(reply: &[Value], quantity: u32) -> Result<Admission, fred::error::Error> {
    let code = reply_text(reply, 0);
    let outcome = match code.as_str() {
        "admitted" => Admission::Admitted {
            order_id: reply_text(reply, 1),
            quantity,
            remaining: reply_int(reply, 2),
        },
        // A stored answer: only admissions and final refusals are stored.
        "replay" => match reply_text(reply, 1).as_str() {
            "admitted" => Admission::Admitted {
                order_id: reply_text(reply, 2),
                quantity: u32::try_from(reply_int(reply, 3)).unwrap_or(quantity),
                remaining: -1,
            },
            "limit_exceeded" => Admission::LimitExceeded,
            // Answers stored before the units left were kept say only "sold out".
            _ => Admission::SoldOut {
                remaining: reply_text(reply, 5).parse().unwrap_or(0),
                replayed: true,
            },
        },
        "sold_out" => Admission::SoldOut {
            remaining: reply_int(reply, 1),
            replayed: false,
        },
        "limit_exceeded" => Admission::LimitExceeded,
        "sale_not_active" => Admission::NotActive,
        "not_found" => Admission::NotFound,
        "overloaded" => Admission::Overloaded,
        "idempotency_key_reused" => Admission::KeyReused,
        "queue_pass_required" => Admission::QueuePassRequired,
        other => return Err(unexpected_reply("purchase", other)),
    };
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripts::tests::reply;

    #[test]
    fn replies_map_to_outcomes() {
        assert_eq!(
            parse_reply(&reply(&["admitted", "42-x", "7"]), 2).unwrap(),
            Admission::Admitted {
                order_id: "42-x".into(),
                quantity: 2,
                remaining: 7
            }
        );
        assert_eq!(
            parse_reply(&reply(&["sold_out", "1"]), 2).unwrap(),
            Admission::SoldOut {
                remaining: 1,
                replayed: false
            }
        );
        assert_eq!(
            parse_reply(&reply(&["replay", "sold_out", "", "2", "0", "1"]), 2).unwrap(),
            Admission::SoldOut {
                remaining: 1,
                replayed: true
            }
        );
        assert_eq!(
            parse_reply(&reply(&["replay", "sold_out", "", "2", "0", ""]), 2).unwrap(),
            Admission::SoldOut {
                remaining: 0,
                replayed: true
            }
        );
        assert_eq!(
            parse_reply(&reply(&["replay", "admitted", "42-y", "3", "1", ""]), 3).unwrap(),
            Admission::Admitted {
                order_id: "42-y".into(),
                quantity: 3,
                remaining: -1
            }
        );
        assert_eq!(
            parse_reply(&reply(&["idempotency_key_reused"]), 1).unwrap(),
            Admission::KeyReused
        );
        assert_eq!(
            parse_reply(&reply(&["queue_pass_required"]), 1).unwrap(),
            Admission::QueuePassRequired
        );
        assert!(parse_reply(&reply(&["bogus"]), 1).is_err());
    }
}
