//! The events of a coupon: issued by the claim script, redeemed on an order or given back, or
//! refused by the database's guard.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Event type of a coupon issued by the claim script.
pub const COUPON_ISSUED: &str = "coupon.issued";

/// Event type of a coupon applied to an order.
pub const COUPON_REDEEMED: &str = "coupon.redeemed";

/// Event type of a redemption undone (the order was cancelled): the coupon is `issued` again.
pub const COUPON_REDEMPTION_CANCELLED: &str = "coupon.redemption_cancelled";

/// Event type of a claimed coupon the database refused (the policy was exhausted in MySQL).
pub const COUPON_REJECTED: &str = "coupon.rejected";

/// A coupon claimed in Redis: one of the policy's coupons is now the user's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouponIssued {
    /// Unique coupon id (`<policy_id>-<uuid>`), made by the gateway; the persister's
    /// idempotency key.
    pub coupon_id: String,
    /// The policy it counts against (`issued + 1 <= total_quantity` in MySQL).
    pub policy_id: u64,
    /// The holder (JWT `sub`).
    pub user_id: String,
    /// Which of the user's coupons of this policy it is: 1 ..= per-user limit.
    pub claim_no: u32,
    /// When Redis issued it.
    pub issued_at: DateTime<Utc>,
    /// When it stops being redeemable.
    pub expires_at: DateTime<Utc>,
}

/// A change of a coupon's redemption state; `seq` orders the changes of one coupon, so a
/// replayed older change never overwrites a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouponRedemption {
    /// The coupon changed.
    pub coupon_id: String,
    /// Its policy, locked while the change waits for a coupon not stored yet.
    pub policy_id: u64,
    /// Its holder.
    pub user_id: String,
    /// The order it was applied to (or taken back from).
    pub order_id: String,
    /// Discount granted, integer minor units (0 when cancelled).
    pub discount: u64,
    /// Position of this change among the coupon's changes (issue is 1).
    pub seq: u64,
    /// When Redis made the change.
    pub at: DateTime<Utc>,
}

/// A coupon that failed the database's guard (policy exhausted or per-user limit reached in
/// MySQL), stored as `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouponRejected {
    /// The refused coupon (its event id derives from it).
    pub coupon_id: String,
    /// The policy, whose coupon a compensation gives back.
    pub policy_id: u64,
    /// Its would-be holder.
    pub user_id: String,
    /// Why it was refused.
    pub reason: String,
}
