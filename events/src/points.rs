//! The events of points: spent on an order, given back, or refused by the balance in MySQL;
//! and the ledger transaction ids they derive from one another.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Event type of points spent by the use script (`POST /v1/me/points/use`).
pub const POINTS_USED: &str = "points.used";

/// Event type of a use given back (`POST /v1/me/points/use/{txid}/cancel`).
pub const POINTS_REFUNDED: &str = "points.refunded";

/// Event type of a use or refund the database refused (the balance in MySQL was too low).
pub const POINTS_REJECTED: &str = "points.rejected";

/// Points spent in Redis on an order; `txid` is unique (`use-<uuid>`) and is the ledger row's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsUsed {
    /// The use's transaction id, also its ledger `txid`.
    pub txid: String,
    /// Whose points: the balance row locked and moved.
    pub user_id: String,
    /// Points spent (at least 1).
    pub amount: u64,
    /// The order they pay for.
    pub order_id: String,
    /// When Redis took them.
    pub at: DateTime<Utc>,
}

/// A use given back; `txid` is `refund-<uuid of the use>`, so a use is refunded at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsRefunded {
    /// The refund's transaction id.
    pub txid: String,
    /// The use it gives back; the refund waits in MySQL until that use is stored.
    pub use_txid: String,
    /// Whose points: only the use's own user gets them back.
    pub user_id: String,
    /// Points given back (the use's amount).
    pub amount: u64,
    /// When Redis gave them back.
    pub at: DateTime<Utc>,
}

/// A point change the database refused; it is recorded in the ledger with delta 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsRejected {
    /// The refused transaction (the event id derives from it).
    pub txid: String,
    /// Whose points: the user to tell (the announcement is keyed by them).
    pub user_id: String,
    /// The points it asked for.
    pub amount: u64,
    /// Why it was refused.
    pub reason: String,
}

/// The ledger `txid` of the points a confirmed order earns.
pub fn earn_txid(order_id: &str) -> String {
    format!("earn-{order_id}")
}

/// The ledger `txid` of the points taken back when a paid order is cancelled (refunded): one
/// per order, as its earning is, so they are taken back once.
pub fn unearn_txid(order_id: &str) -> String {
    format!("unearn-{order_id}")
}

/// The refund `txid` of a use (`use-<id>` → `refund-<id>`), or `None` if `use_txid` is not one.
pub fn refund_txid(use_txid: &str) -> Option<String> {
    use_txid
        .strip_prefix("use-")
        .filter(|id| !id.is_empty())
        .map(|id| format!("refund-{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_has_exactly_one_refund_txid() {
        assert_eq!(refund_txid("use-0a1b").as_deref(), Some("refund-0a1b"));
        assert_eq!(refund_txid("use-"), None);
        assert_eq!(refund_txid("earn-42-x"), None);
        assert_eq!(earn_txid("42-x"), "earn-42-x");
        assert_eq!(unearn_txid("42-x"), "unearn-42-x");
    }
}
