//! Coupon policies: the manager's input and its rules, the record, and the view with live
//! counters.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::failure::Invalid;

/// Most coupons one policy may offer.
pub const MAX_COUPONS: u32 = 10_000_000;

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
    /// The name MySQL stores.
    pub fn as_str(self) -> &'static str {
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
    /// The first field that is wrong, if any.
    pub fn validate(&self) -> Result<(), Invalid> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Invalid::new("name: must have 1 to 200 characters"));
        }
        match self.discount.kind {
            DiscountKind::Percent if !(1..=100).contains(&self.discount.value) => {
                return Err(Invalid::new(
                    "discount.value: a percent must be between 1 and 100",
                ));
            }
            DiscountKind::Amount if !(1..=i64::MAX as u64).contains(&self.discount.value) => {
                return Err(Invalid::new("discount.value: an amount must be at least 1"));
            }
            _ => {}
        }
        if !(1..=MAX_COUPONS).contains(&self.total_quantity) {
            return Err(Invalid::new(format!(
                "total_quantity: must be between 1 and {MAX_COUPONS}"
            )));
        }
        if !(1..=self.total_quantity).contains(&self.per_user_limit) {
            return Err(Invalid::new(
                "per_user_limit: must be between 1 and total_quantity",
            ));
        }
        if self.claim_ends_at <= self.claim_starts_at {
            return Err(Invalid::new("claim_ends_at: must be after claim_starts_at"));
        }
        if self.claim_ends_at <= Utc::now() {
            return Err(Invalid::new("claim_ends_at: must be in the future"));
        }
        match (self.valid_for_seconds, self.expires_at) {
            (Some(seconds), None) if (1..=MAX_VALID_FOR_SECONDS).contains(&seconds) => {}
            (Some(_), None) => {
                return Err(Invalid::new(format!(
                    "valid_for_seconds: must be between 1 and {MAX_VALID_FOR_SECONDS}"
                )));
            }
            (None, Some(at)) if at >= self.claim_ends_at => {}
            (None, Some(_)) => {
                return Err(Invalid::new("expires_at: must not be before claim_ends_at"));
            }
            _ => {
                return Err(Invalid::new(
                    "valid_for_seconds, expires_at: give exactly one of the two",
                ));
            }
        }
        if self.min_order_amount.is_some_and(|m| m > i64::MAX as u64) {
            return Err(Invalid::new("min_order_amount: too large"));
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
