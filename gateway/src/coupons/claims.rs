//! Claiming a coupon: one `EVALSHA` of `lua/claim_coupon.lua`, and its reply as a value.

use fred::prelude::{Pool, Value};

use crate::app::App;
use crate::coupons::policy_store;
use crate::failure::Failure;
use crate::keys::PolicyKeys;
use crate::limits::limiter::Verdict;
use crate::limits::{Armed, Client};
use crate::scripts::{Script, int, reply_int, reply_text, unexpected_reply};
use flashgate_config::{RateClass, RateKey};

/// What the claim script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A coupon is the user's now (or was, for a replayed key).
    Issued {
        /// The coupon's id.
        coupon_id: String,
        /// When it expires, Unix milliseconds.
        expires_ms: i64,
    },
    /// Nothing left to claim.
    Exhausted,
    /// The user already holds the policy's per-user limit.
    AlreadyClaimed,
    /// Before the window, after it, paused or closed.
    NotActive,
    /// No such policy in Redis.
    NotFound,
    /// The policy's outbox is over its bound.
    Overloaded,
    /// A rate limit refused the claim (nothing was taken).
    RateLimited {
        /// Which limit: per user or per address.
        key: RateKey,
        /// Microseconds until it would allow the claim.
        retry_us: u64,
    },
}

impl Claim {
    /// The outcome's label in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Issued { .. } => "issued",
            Self::Exhausted => "exhausted",
            Self::AlreadyClaimed => "already_claimed",
            Self::NotActive => "policy_not_active",
            Self::NotFound => "not_found",
            Self::Overloaded => "overloaded",
            Self::RateLimited { .. } => "rate_limited",
        }
    }
}

/// One claim to make.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The policy's keys.
    pub keys: &'a PolicyKeys,
    /// The claimer.
    pub user_id: &'a str,
    /// Id to give the coupon if issued.
    pub coupon_id: &'a str,
    /// Trace id of the request.
    pub trace_id: &'a str,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<&'a str>,
    /// Refuse (`overloaded`) when the outbox holds this many entries: Kafka is behind, and the
    /// backlog must not grow without bound.
    pub outbox_max: u64,
    /// How long an idempotent answer is kept, in seconds.
    pub idempotency_ttl_secs: u64,
    /// How long the coupon's hash outlives the coupon, in milliseconds: its TTL is its owner
    /// (`gateway.sale_cleanup_grace_ms`, the grace its policy's keys get too).
    pub coupon_keep_ms: u64,
    /// The rate limits judged in the same call (keys under the policy's hash tag).
    pub limits: &'a [Armed],
}

/// Claims a coupon of `policy_id` for `user_id` (one `EVALSHA`); the outcome is counted.
pub async fn claim_coupon(
    app: &App,
    policy_id: u64,
    user_id: &str,
    idempotency_key: Option<&str>,
    trace_id: &str,
    client: Option<Client>,
) -> Result<Claim, Failure> {
    let keys = PolicyKeys::new(app.prefix(), policy_id);
    // Per user (and address) per policy: fields of the policy's holders hash.
    let limits = app.limiter.arm(RateClass::Claim, user_id, client);
    let coupon_id = format!("{policy_id}-{}", uuid::Uuid::now_v7().simple());
    let request = ClaimRequest {
        keys: &keys,
        user_id,
        coupon_id: &coupon_id,
        trace_id,
        idempotency_key,
        outbox_max: app.settings.gateway.outbox_max_len,
        idempotency_ttl_secs: app.settings.gateway.idempotency_ttl_secs,
        coupon_keep_ms: app.settings.gateway.sale_cleanup_grace_ms,
        limits: &limits,
    };
    // Past `gateway.redis_max_in_flight` calls waiting on Redis, shed now rather than queue.
    let in_flight = app.guards.redis_in_flight.enter().ok_or(Failure::Shed)?;
    let mut outcome = claim(&app.redis, &app.scripts.claim_coupon, &request)
        .await
        .map_err(Failure::unreachable("claim"))?;
    drop(in_flight);
    if outcome == Claim::NotFound && known_to_mysql(app, policy_id).await? {
        // Redis no longer holds a policy that is over (cleaned up, `coupons/cleanup.rs`), or
        // not yet again (restore pending): it exists, it is just not open for claims.
        outcome = Claim::NotActive;
    }
    app.metrics.observe_claim(outcome.label());
    Ok(outcome)
}

/// Runs the claim script once and reads its reply.
pub async fn claim(
    redis: &Pool,
    script: &Script,
    request: &ClaimRequest<'_>,
) -> Result<Claim, fred::error::Error> {
    let keys = request.keys;
    let mut names = vec![
        keys.policy.clone(),
        keys.remaining.clone(),
        keys.holders.clone(),
        keys.outbox.clone(),
        keys.coupon(request.coupon_id),
    ];
    if let Some(key) = request.idempotency_key {
        names.push(keys.idempotency(request.user_id, key));
    }
    let mut args: Vec<Value> = vec![
        request.user_id.into(),
        request.coupon_id.into(),
        request.trace_id.into(),
        int(request.outbox_max),
        int(request.idempotency_ttl_secs),
        int(request.coupon_keep_ms),
        int(request.limits.len() as u64),
    ];
    // The limits after ARGV 7: their rates and whom they limit.
    for limit in request.limits {
        args.extend(limit.folded_args());
    }
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    parse_claim(&reply, request.limits)
}

/// Whether MySQL holds the policy `policy_id`.
async fn known_to_mysql(app: &App, policy_id: u64) -> Result<bool, Failure> {
    let found = policy_store::find(&app.db, policy_id)
        .await
        .map_err(Failure::Mysql)?;
    Ok(found.is_some())
}

fn parse_claim(reply: &[Value], limits: &[Armed]) -> Result<Claim, fred::error::Error> {
    if let Some(Verdict::Limited { index, retry_us }) = Verdict::parse(reply, 0) {
        return Ok(Claim::RateLimited {
            key: limits.get(index).map_or(RateKey::User, |limit| limit.key),
            retry_us,
        });
    }
    let code = reply_text(reply, 0);
    // A replay carries the stored code one place further on.
    let (code, at) = if code == "replay" {
        (reply_text(reply, 1), 2)
    } else {
        (code, 1)
    };
    Ok(match code.as_str() {
        "issued" => Claim::Issued {
            coupon_id: reply_text(reply, at),
            expires_ms: reply_int(reply, at + 1),
        },
        "exhausted" => Claim::Exhausted,
        "already_claimed" => Claim::AlreadyClaimed,
        "policy_not_active" => Claim::NotActive,
        "not_found" => Claim::NotFound,
        "overloaded" => Claim::Overloaded,
        other => return Err(unexpected_reply("claim_coupon", other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripts::tests::reply;

    #[test]
    fn claim_replies_map_to_outcomes_and_replays_give_the_same_coupon() {
        assert_eq!(
            parse_claim(&reply(&["issued", "3-c", "1700", "1", "9"]), &[]).unwrap(),
            Claim::Issued {
                coupon_id: "3-c".into(),
                expires_ms: 1700
            }
        );
        assert_eq!(
            parse_claim(&reply(&["replay", "issued", "3-c", "1700"]), &[]).unwrap(),
            Claim::Issued {
                coupon_id: "3-c".into(),
                expires_ms: 1700
            }
        );
        assert_eq!(
            parse_claim(&reply(&["replay", "exhausted", "", "0"]), &[]).unwrap(),
            Claim::Exhausted
        );
        assert_eq!(
            parse_claim(&reply(&["already_claimed"]), &[]).unwrap(),
            Claim::AlreadyClaimed
        );
        assert!(parse_claim(&reply(&["bogus"]), &[]).is_err());
    }
}
