//! Coupons: claiming one (one `EVALSHA` of `lua/claim_coupon.lua`), redeeming it on an order
//! and undoing that, and the shopper's list. Business outcomes are values, not errors.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use fred::prelude::{HashesInterface, Pool, Value};
use serde::Serialize;
use sqlx::{MySqlPool, Row};

use crate::keys::PolicyKeys;
use crate::scripts::{Script, reply_int, reply_text, unexpected_reply};

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
    /// Refuse when the outbox holds this many entries.
    pub outbox_max: u64,
    /// How long an idempotent answer is kept, in seconds.
    pub idempotency_ttl_secs: u64,
}

fn as_int(n: u64) -> Value {
    i64::try_from(n).unwrap_or(i64::MAX).into()
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
    let args: Vec<Value> = vec![
        request.user_id.into(),
        request.coupon_id.into(),
        request.trace_id.into(),
        as_int(request.outbox_max),
        as_int(request.idempotency_ttl_secs),
    ];
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    parse_claim(&reply)
}

fn parse_claim(reply: &[Value]) -> Result<Claim, fred::error::Error> {
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

/// What a redeem or cancel script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
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

fn parse_change(
    script: &str,
    reply: &[Value],
    order_id: &str,
) -> Result<Change, fred::error::Error> {
    let code = reply_text(reply, 0);
    Ok(match code.as_str() {
        "redeemed" => Change::Done {
            order_id: order_id.to_owned(),
        },
        "cancelled" => Change::Done {
            order_id: reply_text(reply, 1),
        },
        "not_found" => Change::NotFound,
        "already_redeemed" => Change::AlreadyRedeemed {
            order_id: reply_text(reply, 1),
        },
        "not_redeemed" => Change::NotRedeemed,
        "expired" => Change::Expired,
        "overloaded" => Change::Overloaded,
        other => return Err(unexpected_reply(script, other)),
    })
}

/// The policy a coupon id belongs to (`<policy_id>-<uuid>`).
pub fn policy_of(coupon_id: &str) -> Option<u64> {
    let (policy, rest) = coupon_id.split_once('-')?;
    (!rest.is_empty() && coupon_id.len() <= 64)
        .then(|| policy.parse().ok())
        .flatten()
}

/// One redeem or cancel of one coupon.
#[derive(Debug, Clone)]
pub struct CouponChange<'a> {
    /// The keys of the coupon's policy.
    pub keys: &'a PolicyKeys,
    /// The coupon.
    pub coupon_id: &'a str,
    /// The caller, who must hold it.
    pub user_id: &'a str,
    /// Trace id of the request.
    pub trace_id: &'a str,
    /// Refuse when the outbox holds this many entries.
    pub outbox_max: u64,
}

/// Applies the coupon to `order_id` with `discount`; of concurrent calls exactly one wins.
pub async fn redeem(
    redis: &Pool,
    script: &Script,
    change: &CouponChange<'_>,
    order_id: &str,
    discount: u64,
) -> Result<Change, fred::error::Error> {
    let names = vec![
        change.keys.coupon(change.coupon_id),
        change.keys.outbox.clone(),
    ];
    let args: Vec<Value> = vec![
        change.user_id.into(),
        order_id.into(),
        as_int(discount),
        change.trace_id.into(),
        as_int(change.outbox_max),
    ];
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    parse_change("redeem_coupon", &reply, order_id)
}

/// Undoes the coupon's redemption: it is `issued` again.
pub async fn cancel_redemption(
    redis: &Pool,
    script: &Script,
    change: &CouponChange<'_>,
) -> Result<Change, fred::error::Error> {
    let names = vec![
        change.keys.coupon(change.coupon_id),
        change.keys.outbox.clone(),
    ];
    // The call's own id: a re-send of this very call (the Redis client's, after a closed
    // connection) is answered as the first run was; another call finds `not_redeemed`.
    let call_id = uuid::Uuid::now_v7().simple().to_string();
    let args: Vec<Value> = vec![
        change.user_id.into(),
        change.trace_id.into(),
        as_int(change.outbox_max),
        call_id.into(),
    ];
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    parse_change("cancel_redemption", &reply, "")
}

/// One coupon as its holder sees it.
#[derive(Debug, Clone, Serialize)]
pub struct CouponView {
    /// The coupon.
    pub coupon_id: String,
    /// Its policy.
    pub policy_id: u64,
    /// `issued`, `redeemed` or `expired` (`rejected` when the database refused it).
    pub status: String,
    /// When it was claimed.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The order it is redeemed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The discount it granted there, minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discount: Option<u64>,
}

/// A persisted coupon: its view, holder and change sequence.
#[derive(Debug, Clone)]
pub struct StoredCoupon {
    /// As shown.
    pub view: CouponView,
    /// The holder.
    pub user_id: String,
    /// Its last persisted change.
    pub seq: u64,
}

const COLUMNS: &str =
    "coupon_id, policy_id, user_id, status, seq, order_id, discount,      issued_at, expires_at";

fn from_row(row: &sqlx::mysql::MySqlRow) -> Result<StoredCoupon, sqlx::Error> {
    let issued: NaiveDateTime = row.try_get("issued_at")?;
    let expires: NaiveDateTime = row.try_get("expires_at")?;
    Ok(StoredCoupon {
        view: CouponView {
            coupon_id: row.try_get("coupon_id")?,
            policy_id: row.try_get("policy_id")?,
            status: row.try_get("status")?,
            issued_at: issued.and_utc(),
            expires_at: expires.and_utc(),
            order_id: row.try_get("order_id")?,
            discount: row.try_get("discount")?,
        },
        user_id: row.try_get("user_id")?,
        seq: row.try_get("seq")?,
    })
}

/// The persisted coupon with `coupon_id`, if any.
pub async fn find(db: &MySqlPool, coupon_id: &str) -> anyhow::Result<Option<StoredCoupon>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM coupons WHERE coupon_id = ?"
    )))
    .bind(coupon_id)
    .fetch_optional(db)
    .await
    .context("reading coupon")?;
    row.as_ref()
        .map(from_row)
        .transpose()
        .context("decoding coupon")
}

/// Puts a persisted coupon back into Redis unless Redis has it. Returns whether it loaded.
pub async fn load_into_redis(
    redis: &Pool,
    script: &Script,
    keys: &PolicyKeys,
    coupon: &StoredCoupon,
) -> anyhow::Result<bool> {
    let view = &coupon.view;
    let args: Vec<Value> = vec![
        coupon.user_id.as_str().into(),
        view.status.as_str().into(),
        view.expires_at.timestamp_millis().into(),
        as_int(coupon.seq),
        view.order_id.clone().unwrap_or_default().into(),
        as_int(view.discount.unwrap_or(0)),
        view.issued_at.timestamp_millis().into(),
    ];
    let loaded: i64 = script
        .run(redis, vec![keys.coupon(&view.coupon_id)], args)
        .await
        .context("loading coupon into Redis")?;
    Ok(loaded == 1)
}

/// A page of `user`'s persisted coupons, newest first, after `cursor`. Redis holds the latest
/// redemption state (MySQL may be a moment behind), so each coupon's status is read there when
/// present; an `issued` coupon past its expiry shows as `expired`.
pub async fn list_for_user(
    db: &MySqlPool,
    redis: &Pool,
    prefix: &str,
    user: &str,
    cursor: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> anyhow::Result<Vec<CouponView>> {
    // Without a cursor: everything before the end of MySQL's DATETIME range.
    let (at, id) = cursor.unwrap_or_else(|| {
        let end = DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31 is a time");
        (end, String::new())
    });
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM coupons WHERE user_id = ? \
         AND (issued_at < ? OR (issued_at = ? AND coupon_id < ?)) \
         ORDER BY issued_at DESC, coupon_id DESC LIMIT ?"
    )))
    .bind(user)
    .bind(at.naive_utc())
    .bind(at.naive_utc())
    .bind(&id)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("listing coupons")?;
    let stored = rows
        .iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()
        .context("decoding coupons")?;
    let now = Utc::now();
    let mut views = Vec::with_capacity(stored.len());
    for coupon in stored {
        let mut view = coupon.view;
        if view.status != "rejected" {
            let keys = PolicyKeys::new(prefix, view.policy_id);
            let live: Vec<Option<String>> = redis
                .hmget(
                    keys.coupon(&view.coupon_id),
                    vec!["status", "order_id", "discount"],
                )
                .await
                .context("reading coupon state")?;
            if let [Some(status), order, discount] = live.as_slice() {
                view.status.clone_from(status);
                view.order_id = order.clone().filter(|o| !o.is_empty());
                view.discount = discount
                    .as_deref()
                    .and_then(|d| d.parse().ok())
                    .filter(|_| view.order_id.is_some());
            }
            if view.status == "issued" && view.expires_at <= now {
                view.status = "expired".to_owned();
            }
        }
        views.push(view);
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(items: &[&str]) -> Vec<Value> {
        items.iter().map(|s| Value::from(*s)).collect()
    }

    #[test]
    fn claim_replies_map_to_outcomes_and_replays_give_the_same_coupon() {
        assert_eq!(
            parse_claim(&reply(&["issued", "3-c", "1700", "1", "9"])).unwrap(),
            Claim::Issued {
                coupon_id: "3-c".into(),
                expires_ms: 1700
            }
        );
        assert_eq!(
            parse_claim(&reply(&["replay", "issued", "3-c", "1700"])).unwrap(),
            Claim::Issued {
                coupon_id: "3-c".into(),
                expires_ms: 1700
            }
        );
        assert_eq!(
            parse_claim(&reply(&["replay", "exhausted", "", "0"])).unwrap(),
            Claim::Exhausted
        );
        assert_eq!(
            parse_claim(&reply(&["already_claimed"])).unwrap(),
            Claim::AlreadyClaimed
        );
        assert!(parse_claim(&reply(&["bogus"])).is_err());
    }

    #[test]
    fn change_replies_name_the_order_concerned() {
        assert_eq!(
            parse_change("redeem", &reply(&["redeemed", "2", "1"]), "9-o").unwrap(),
            Change::Done {
                order_id: "9-o".into()
            }
        );
        assert_eq!(
            parse_change("cancel", &reply(&["cancelled", "9-o", "3", "1"]), "").unwrap(),
            Change::Done {
                order_id: "9-o".into()
            }
        );
        assert_eq!(
            parse_change("redeem", &reply(&["already_redeemed", "8-o"]), "9-o").unwrap(),
            Change::AlreadyRedeemed {
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
