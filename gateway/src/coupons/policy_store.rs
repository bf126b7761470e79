//! Coupon policies in MySQL (the record) and in Redis (the state derived from it): insert,
//! read, list, load and restore, live counters, status.

use anyhow::Context;
use chrono::NaiveDateTime;
use fred::prelude::{Pool, SetsInterface, Value};
use sqlx::{MySqlPool, Row};

use crate::coupons::policy::{Discount, DiscountKind, NewPolicy, Policy};
use crate::keys::{self, PolicyKeys};
use crate::owned_state::{self, set_status_in_redis};
use crate::scripts::{Script, Scripts};

const COLUMNS: &str = "policy_id, name, discount_kind, discount_value, min_order_amount, \
     total_quantity, issued, per_user_limit, claim_starts_at, claim_ends_at, \
     valid_for_seconds, expires_at, status, created_at";

fn from_row(row: &sqlx::mysql::MySqlRow) -> Result<Policy, sqlx::Error> {
    let kind: String = row.try_get("discount_kind")?;
    Ok(Policy {
        policy_id: row.try_get("policy_id")?,
        name: row.try_get("name")?,
        discount: Discount {
            kind: if kind == "percent" {
                DiscountKind::Percent
            } else {
                DiscountKind::Amount
            },
            value: row.try_get("discount_value")?,
        },
        total_quantity: row.try_get("total_quantity")?,
        per_user_limit: row.try_get("per_user_limit")?,
        claim_starts_at: row
            .try_get::<NaiveDateTime, _>("claim_starts_at")?
            .and_utc(),
        claim_ends_at: row.try_get::<NaiveDateTime, _>("claim_ends_at")?.and_utc(),
        valid_for_seconds: row.try_get("valid_for_seconds")?,
        expires_at: row
            .try_get::<Option<NaiveDateTime>, _>("expires_at")?
            .map(|at| at.and_utc()),
        min_order_amount: row.try_get("min_order_amount")?,
        status: row.try_get("status")?,
        created_at: row.try_get::<NaiveDateTime, _>("created_at")?.and_utc(),
        persisted: row.try_get("issued")?,
    })
}

/// Inserts the policy into MySQL and returns it with its id.
pub async fn insert(db: &MySqlPool, new: &NewPolicy) -> anyhow::Result<Policy> {
    let result = sqlx::query(
        "INSERT INTO coupon_policies (name, discount_kind, discount_value, min_order_amount, \
         total_quantity, per_user_limit, claim_starts_at, claim_ends_at, valid_for_seconds, \
         expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.name.trim())
    .bind(new.discount.kind.as_str())
    .bind(new.discount.value)
    .bind(new.min_order_amount)
    .bind(new.total_quantity)
    .bind(new.per_user_limit)
    .bind(new.claim_starts_at.naive_utc())
    .bind(new.claim_ends_at.naive_utc())
    .bind(new.valid_for_seconds)
    .bind(new.expires_at.map(|at| at.naive_utc()))
    .execute(db)
    .await
    .context("inserting coupon policy")?;
    find(db, result.last_insert_id())
        .await?
        .context("policy vanished after insert")
}

/// The policy with `policy_id`, if any.
pub async fn find(db: &MySqlPool, policy_id: u64) -> anyhow::Result<Option<Policy>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM coupon_policies WHERE policy_id = ?"
    )))
    .bind(policy_id)
    .fetch_optional(db)
    .await
    .context("reading coupon policy")?;
    row.as_ref()
        .map(from_row)
        .transpose()
        .context("decoding coupon policy")
}

/// Up to `limit` policies with ids below `before` (newest first): keyset pagination.
pub async fn list(db: &MySqlPool, before: Option<u64>, limit: u32) -> anyhow::Result<Vec<Policy>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM coupon_policies WHERE policy_id < ? \
         ORDER BY policy_id DESC LIMIT ?"
    )))
    .bind(before.unwrap_or(u64::MAX))
    .bind(limit)
    .fetch_all(db)
    .await
    .context("listing coupon policies")?;
    rows.iter()
        .map(from_row)
        .collect::<Result<_, _>>()
        .context("decoding coupon policies")
}

/// Policies whose coupons may still change (the last one has not expired): the ones Redis
/// must hold.
async fn live_policies(db: &MySqlPool) -> anyhow::Result<Vec<Policy>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM coupon_policies WHERE COALESCE(expires_at, \
         claim_ends_at + INTERVAL valid_for_seconds SECOND) > UTC_TIMESTAMP(3) \
         ORDER BY policy_id"
    )))
    .fetch_all(db)
    .await
    .context("listing live coupon policies")?;
    rows.iter()
        .map(from_row)
        .collect::<Result<_, _>>()
        .context("decoding coupon policies")
}

/// Coupons each user already holds of the policy, as persisted.
async fn persisted_holders(db: &MySqlPool, policy_id: u64) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT user_id, COUNT(*) AS held FROM coupons \
         WHERE policy_id = ? AND status <> 'rejected' GROUP BY user_id",
    )
    .bind(policy_id)
    .fetch_all(db)
    .await
    .context("reading coupon holders")?;
    rows.iter()
        .map(|row| Ok((row.try_get("user_id")?, row.try_get("held")?)))
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding coupon holders")
}

/// Loads a policy into Redis unless Redis already holds it (then its live counters win),
/// registers its outbox with the relay, and lists it among the live policies (after the load:
/// the cleanup must never find it listed before its keys exist, and a restore lists again a
/// policy whose listing failed). Returns whether it was loaded.
pub async fn load_into_redis(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    prefix: &str,
    policy: &Policy,
) -> anyhow::Result<bool> {
    let policy_keys = PolicyKeys::new(prefix, policy.policy_id);
    let holders = if policy.persisted > 0 {
        persisted_holders(db, policy.policy_id).await?
    } else {
        Vec::new()
    };
    let valid_for_ms = i64::from(policy.valid_for_seconds.unwrap_or(0)) * 1000;
    let mut args: Vec<Value> = vec![
        policy.status.as_str().into(),
        policy.claim_starts_at.timestamp_millis().into(),
        policy.claim_ends_at.timestamp_millis().into(),
        i64::from(policy.per_user_limit).into(),
        i64::from(policy.total_quantity).into(),
        valid_for_ms.into(),
        policy
            .expires_at
            .map_or(0, |at| at.timestamp_millis())
            .into(),
        policy.redeem_until().timestamp_millis().into(),
        (i64::from(policy.total_quantity) - i64::from(policy.persisted)).into(),
        i64::from(policy.persisted).into(),
    ];
    for (user, held) in holders {
        args.push(user.into());
        args.push(held.into());
    }
    let state = vec![
        policy_keys.policy,
        policy_keys.remaining,
        policy_keys.holders,
    ];
    let outbox = &policy_keys.outbox;
    let loaded = owned_state::load_and_register(redis, script, state, args, prefix, outbox).await?;
    let _: i64 = redis
        .sadd(keys::live_policies(prefix), policy.policy_id)
        .await
        .context("listing the policy as live")?;
    Ok(loaded)
}

/// Restores every live policy that Redis lost. Returns how many were loaded.
pub async fn restore(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    prefix: &str,
) -> anyhow::Result<usize> {
    let mut loaded = 0;
    for policy in live_policies(db).await? {
        if load_into_redis(redis, db, script, prefix, &policy).await? {
            tracing::warn!(
                policy_id = policy.policy_id,
                "coupon policy restored into Redis from MySQL"
            );
            loaded += 1;
        }
    }
    Ok(loaded)
}

/// Live counters of a policy from Redis: `(remaining, issued)`.
pub async fn live_counters(
    redis: &Pool,
    scripts: &Scripts,
    prefix: &str,
    policy_id: u64,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let keys = PolicyKeys::new(prefix, policy_id);
    let read = &scripts.read_counters;
    owned_state::counters(redis, read, &keys.remaining, &keys.policy, "issued").await
}

/// What a status change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// Done (or already so).
    Changed,
    /// No such policy.
    NotFound,
    /// The policy is closed; closing is final.
    Closed,
}

/// Sets a policy's status (`active`, `paused` or `closed`) in MySQL and in Redis.
pub async fn set_status(
    redis: &Pool,
    db: &MySqlPool,
    prefix: &str,
    policy_id: u64,
    status: &str,
) -> anyhow::Result<StatusChange> {
    let updated = sqlx::query(
        "UPDATE coupon_policies SET status = ? WHERE policy_id = ? AND status <> 'closed'",
    )
    .bind(status)
    .bind(policy_id)
    .execute(db)
    .await
    .context("updating coupon policy status")?;
    if updated.rows_affected() == 0 {
        match find(db, policy_id).await? {
            None => return Ok(StatusChange::NotFound),
            Some(policy) if policy.status == "closed" && status != "closed" => {
                return Ok(StatusChange::Closed);
            }
            Some(_) => {}
        }
    }
    set_status_in_redis(redis, &PolicyKeys::new(prefix, policy_id).policy, status).await?;
    Ok(StatusChange::Changed)
}
