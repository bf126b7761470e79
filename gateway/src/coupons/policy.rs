//! Coupon policies: the manager's input, the MySQL record, and the Redis state derived from it.

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use fred::prelude::{HashesInterface, KeysInterface, Pool, Value};
use serde::{Deserialize, Serialize};
use sqlx::{MySqlPool, Row};

use crate::error::ApiError;
use crate::keys::PolicyKeys;
use crate::scripts::Script;

/// Most coupons one policy may offer.
pub const MAX_QUANTITY: u32 = 10_000_000;

/// Longest `valid_for_seconds`: ten years.
const MAX_VALID_FOR_SECONDS: u32 = 10 * 366 * 24 * 3600;

/// How a coupon lowers an order's amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscountKind {
    /// A fixed amount in minor units (never more than the order's amount).
    Amount,
    /// A percentage (1 to 100) of the order's amount, rounded down.
    Percent,
}

impl DiscountKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Amount => "amount",
            Self::Percent => "percent",
        }
    }
}

/// A policy's discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discount {
    /// `amount` or `percent`.
    pub kind: DiscountKind,
    /// Minor units (`amount`) or 1 to 100 (`percent`).
    pub value: u64,
}

impl Discount {
    /// The discount on an order of `amount` minor units.
    pub fn on(self, amount: u64) -> u64 {
        match self.kind {
            DiscountKind::Amount => self.value.min(amount),
            DiscountKind::Percent => {
                u64::try_from(u128::from(amount) * u128::from(self.value.min(100)) / 100)
                    .unwrap_or(amount)
            }
        }
    }
}

fn default_per_user_limit() -> u32 {
    1
}

/// `POST /v1/admin/coupon-policies` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// What a coupon is worth.
    pub discount: Discount,
    /// Coupons offered, 1 to 10,000,000.
    pub total_quantity: u32,
    /// Most coupons one shopper may claim (default 1).
    #[serde(default = "default_per_user_limit")]
    pub per_user_limit: u32,
    /// When claims open (RFC 3339).
    pub claim_starts_at: DateTime<Utc>,
    /// When claims close (RFC 3339), after `claim_starts_at`.
    pub claim_ends_at: DateTime<Utc>,
    /// A coupon expires this long after it was claimed ...
    pub valid_for_seconds: Option<u32>,
    /// ... or every coupon expires at this instant (exactly one of the two).
    pub expires_at: Option<DateTime<Utc>>,
    /// Smallest order amount (minor units) a coupon applies to.
    pub min_order_amount: Option<u64>,
}

impl NewPolicy {
    /// 400 naming the first field that is wrong.
    pub fn validate(&self) -> Result<(), ApiError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::invalid("name: must have 1 to 200 characters"));
        }
        match self.discount.kind {
            DiscountKind::Percent if !(1..=100).contains(&self.discount.value) => {
                return Err(ApiError::invalid(
                    "discount.value: a percent must be between 1 and 100",
                ));
            }
            DiscountKind::Amount if !(1..=i64::MAX as u64).contains(&self.discount.value) => {
                return Err(ApiError::invalid(
                    "discount.value: an amount must be at least 1",
                ));
            }
            _ => {}
        }
        if !(1..=MAX_QUANTITY).contains(&self.total_quantity) {
            return Err(ApiError::invalid(format!(
                "total_quantity: must be between 1 and {MAX_QUANTITY}"
            )));
        }
        if !(1..=self.total_quantity).contains(&self.per_user_limit) {
            return Err(ApiError::invalid(
                "per_user_limit: must be between 1 and total_quantity",
            ));
        }
        if self.claim_ends_at <= self.claim_starts_at {
            return Err(ApiError::invalid(
                "claim_ends_at: must be after claim_starts_at",
            ));
        }
        if self.claim_ends_at <= Utc::now() {
            return Err(ApiError::invalid("claim_ends_at: must be in the future"));
        }
        match (self.valid_for_seconds, self.expires_at) {
            (Some(seconds), None) if (1..=MAX_VALID_FOR_SECONDS).contains(&seconds) => {}
            (Some(_), None) => {
                return Err(ApiError::invalid(format!(
                    "valid_for_seconds: must be between 1 and {MAX_VALID_FOR_SECONDS}"
                )));
            }
            (None, Some(at)) if at >= self.claim_ends_at => {}
            (None, Some(_)) => {
                return Err(ApiError::invalid(
                    "expires_at: must not be before claim_ends_at",
                ));
            }
            _ => {
                return Err(ApiError::invalid(
                    "valid_for_seconds, expires_at: give exactly one of the two",
                ));
            }
        }
        if self.min_order_amount.is_some_and(|m| m > i64::MAX as u64) {
            return Err(ApiError::invalid("min_order_amount: too large"));
        }
        Ok(())
    }
}

/// A policy as stored in MySQL.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    /// Id given by MySQL.
    pub policy_id: u64,
    /// Display name.
    pub name: String,
    /// What a coupon is worth.
    pub discount: Discount,
    /// Coupons offered.
    pub total_quantity: u32,
    /// Most coupons per shopper.
    pub per_user_limit: u32,
    /// When claims open.
    pub claim_starts_at: DateTime<Utc>,
    /// When claims close.
    pub claim_ends_at: DateTime<Utc>,
    /// Validity after the claim, when coupons expire relative to their claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_for_seconds: Option<u32>,
    /// Fixed expiry of every coupon, when not relative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Smallest order amount a coupon applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_order_amount: Option<u64>,
    /// `active`, `paused` or `closed`.
    pub status: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Coupons persisted as issued (the persister moves this).
    #[serde(skip)]
    pub persisted: u32,
}

impl Policy {
    /// When the last coupon of this policy expires: after it nothing can change.
    pub fn redeem_until(&self) -> DateTime<Utc> {
        self.expires_at.unwrap_or_else(|| {
            self.claim_ends_at + Duration::seconds(i64::from(self.valid_for_seconds.unwrap_or(0)))
        })
    }
}

/// A policy with its live counters, as the manager API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    /// The stored policy.
    #[serde(flatten)]
    pub policy: Policy,
    /// Coupons left to claim in Redis (null when Redis does not hold the policy).
    pub remaining: Option<i64>,
    /// Coupons claimed in Redis.
    pub issued: Option<i64>,
    /// Coupons persisted in MySQL.
    pub persisted: u32,
}

const COLUMNS: &str = "policy_id, name, discount_kind, discount_value, min_order_amount, \
     total_quantity, issued, per_user_limit, claim_starts_at, claim_ends_at, \
     valid_for_seconds, expires_at, status, created_at";

fn utc(naive: NaiveDateTime) -> DateTime<Utc> {
    naive.and_utc()
}

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
        claim_starts_at: utc(row.try_get("claim_starts_at")?),
        claim_ends_at: utc(row.try_get("claim_ends_at")?),
        valid_for_seconds: row.try_get("valid_for_seconds")?,
        expires_at: row
            .try_get::<Option<NaiveDateTime>, _>("expires_at")?
            .map(utc),
        min_order_amount: row.try_get("min_order_amount")?,
        status: row.try_get("status")?,
        created_at: utc(row.try_get("created_at")?),
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

/// Loads a policy into Redis unless Redis already holds it (then its live counters win), and
/// registers its outbox with the relay. Returns whether it was loaded.
pub async fn load_into_redis(
    redis: &Pool,
    db: &MySqlPool,
    script: &Script,
    prefix: &str,
    policy: &Policy,
) -> anyhow::Result<bool> {
    let keys = PolicyKeys::new(prefix, policy.policy_id);
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
    let state = vec![keys.policy, keys.remaining, keys.holders];
    crate::sales::load_and_register(redis, script, state, args, prefix, &keys.outbox).await
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
    prefix: &str,
    policy_id: u64,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let keys = PolicyKeys::new(prefix, policy_id);
    let remaining: Option<i64> = redis
        .get(&keys.remaining)
        .await
        .context("reading remaining coupons")?;
    let issued: Option<i64> = redis
        .hget(&keys.policy, "issued")
        .await
        .context("reading issued coupons")?;
    Ok((remaining, issued))
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
    crate::sales::set_status_in_redis(redis, &PolicyKeys::new(prefix, policy_id).policy, status)
        .await?;
    Ok(StatusChange::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NewPolicy {
        NewPolicy {
            name: "Welcome".into(),
            discount: Discount {
                kind: DiscountKind::Percent,
                value: 10,
            },
            total_quantity: 500,
            per_user_limit: 1,
            claim_starts_at: Utc::now() - Duration::minutes(1),
            claim_ends_at: Utc::now() + Duration::hours(1),
            valid_for_seconds: Some(3600),
            expires_at: None,
            min_order_amount: None,
        }
    }

    fn rejects(change: impl FnOnce(&mut NewPolicy), field: &str) {
        let mut p = policy();
        change(&mut p);
        let err = p.validate().expect_err(field).to_string();
        assert!(err.starts_with(field), "{err}");
    }

    #[test]
    fn a_sound_policy_passes_and_each_broken_field_is_named() {
        policy().validate().expect("valid");
        rejects(|p| p.name = " ".into(), "name");
        rejects(|p| p.discount.value = 0, "discount.value");
        rejects(|p| p.discount.value = 101, "discount.value");
        rejects(
            |p| {
                p.discount = Discount {
                    kind: DiscountKind::Amount,
                    value: 0,
                }
            },
            "discount.value",
        );
        rejects(|p| p.total_quantity = 0, "total_quantity");
        rejects(|p| p.per_user_limit = 0, "per_user_limit");
        rejects(|p| p.per_user_limit = 501, "per_user_limit");
        rejects(|p| p.claim_ends_at = p.claim_starts_at, "claim_ends_at");
        rejects(|p| p.valid_for_seconds = Some(0), "valid_for_seconds");
        rejects(
            |p| p.expires_at = Some(Utc::now()),
            "valid_for_seconds, expires_at",
        );
        rejects(
            |p| {
                p.valid_for_seconds = None;
                p.expires_at = Some(p.claim_ends_at - Duration::seconds(1));
            },
            "expires_at",
        );
        rejects(
            |p| p.valid_for_seconds = None,
            "valid_for_seconds, expires_at",
        );
    }

    #[test]
    fn discounts_never_exceed_the_order_amount() {
        let amount = Discount {
            kind: DiscountKind::Amount,
            value: 500,
        };
        assert_eq!(amount.on(2_000), 500);
        assert_eq!(amount.on(300), 300);
        let percent = Discount {
            kind: DiscountKind::Percent,
            value: 15,
        };
        assert_eq!(percent.on(1_999), 299, "rounded down");
        let all = Discount {
            kind: DiscountKind::Percent,
            value: 100,
        };
        assert_eq!(all.on(u64::MAX), u64::MAX);
    }
}
