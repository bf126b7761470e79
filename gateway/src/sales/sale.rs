//! A flash sale as the manager describes it, as MySQL stores it, and as the manager API shows
//! it with its live counters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failure::Invalid;

/// Largest stock one sale may offer.
pub const MAX_STOCK: u32 = 10_000_000;

/// The payment windows a sale may give its orders, in seconds, and the default.
pub const PAYMENT_WINDOW_SECONDS: std::ops::RangeInclusive<u32> = 30..=86_400;

/// The payment window of a sale that names none: 10 minutes.
pub const DEFAULT_PAYMENT_WINDOW_SECONDS: u32 = 600;

fn default_payment_window() -> u32 {
    DEFAULT_PAYMENT_WINDOW_SECONDS
}

/// `POST /v1/admin/sales` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSale {
    /// Product code, 1 to 64 characters.
    pub sku: String,
    /// Display title, 1 to 200 characters.
    pub title: String,
    /// Unit price in integer minor units.
    pub price: u64,
    /// Units offered, 1 to 10,000,000.
    pub stock: u32,
    /// Most units one shopper may buy, at least 1.
    pub per_user_limit: u32,
    /// Opening time (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// Closing time (RFC 3339), after `starts_at`.
    pub ends_at: DateTime<Utc>,
    /// How long an admitted order may wait to be paid before it expires and gives its units
    /// back, 30 to 86,400 seconds; default 600.
    #[serde(default = "default_payment_window")]
    pub payment_window_seconds: u32,
    /// A waiting room with a verifiable draw (`{"mode": "draw", "opens_at", "admit_per_second",
    /// "max_active"}`); purchases then need its pass. Default: none.
    #[serde(default)]
    pub queue: Option<crate::queue::spec::QueueSpec>,
}

impl NewSale {
    /// The first field that is wrong, if any.
    pub fn validate(&self) -> Result<(), Invalid> {
        let sku = self.sku.trim();
        if sku.is_empty() || sku.chars().count() > 64 {
            return Err(Invalid::new("sku: must have 1 to 64 characters"));
        }
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(Invalid::new("title: must have 1 to 200 characters"));
        }
        if self.price > i64::MAX as u64 / u64::from(MAX_STOCK) {
            return Err(Invalid::new("price: too large"));
        }
        if !(1..=MAX_STOCK).contains(&self.stock) {
            return Err(Invalid::new(format!(
                "stock: must be between 1 and {MAX_STOCK}"
            )));
        }
        if self.per_user_limit < 1 {
            return Err(Invalid::new("per_user_limit: must be at least 1"));
        }
        if self.ends_at <= self.starts_at {
            return Err(Invalid::new("ends_at: must be after starts_at"));
        }
        if self.ends_at <= Utc::now() {
            return Err(Invalid::new("ends_at: must be in the future"));
        }
        if !PAYMENT_WINDOW_SECONDS.contains(&self.payment_window_seconds) {
            return Err(Invalid::new(format!(
                "payment_window_seconds: must be between {} and {}",
                PAYMENT_WINDOW_SECONDS.start(),
                PAYMENT_WINDOW_SECONDS.end()
            )));
        }
        if let Some(queue) = &self.queue {
            queue.validate(self.starts_at)?;
        }
        Ok(())
    }
}

/// A sale as stored in MySQL.
#[derive(Debug, Clone, Serialize)]
pub struct Sale {
    /// Id given by MySQL.
    pub sale_id: u64,
    /// Product code.
    pub sku: String,
    /// Display title.
    pub title: String,
    /// Unit price, integer minor units.
    pub price: u64,
    /// Units offered.
    pub stock: u32,
    /// Units persisted as sold (the persister moves this).
    #[serde(skip)]
    pub sold: u32,
    /// Most units per shopper.
    pub per_user_limit: u32,
    /// Opening time.
    pub starts_at: DateTime<Utc>,
    /// Closing time.
    pub ends_at: DateTime<Utc>,
    /// How long an order may wait to be paid, in seconds.
    pub payment_window_seconds: u32,
    /// `active` or `paused`.
    pub status: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A sale with its live counters, as the manager API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SaleView {
    /// The stored sale.
    #[serde(flatten)]
    pub sale: Sale,
    /// Units left in Redis (null when Redis does not hold the sale).
    pub remaining: Option<i64>,
    /// Units admitted in Redis.
    pub admitted: Option<i64>,
    /// Units in orders persisted (confirmed) in MySQL.
    pub persisted: u32,
    /// The waiting room, with its live counts (absent for a sale without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::queue::spec::QueueView>,
}

/// `PATCH /v1/admin/sales/{id}` body: a status, a change of the waiting room, or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalePatch {
    /// `active` or `paused`.
    #[serde(default)]
    pub status: Option<String>,
    /// The waiting room's rate or pause.
    #[serde(default)]
    pub queue: Option<crate::queue::spec::QueuePatch>,
}
