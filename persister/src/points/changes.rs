//! What the persister writes of points — a [`PointChange`]: an order's earning, its take-back
//! when the paid order is cancelled, a use, a refund — and what writing them came to
//! ([`PointsOutcome`], with the [`Refused`] ones).

use flashgate_events::{PointsRefunded, PointsUsed, earn_txid, unearn_txid};

use super::Settle;

/// Why a use is refused.
const USE_REFUSED: &str = "the balance in the system of record is too low";

/// Why a refund is refused.
const REFUND_REFUSED: &str = "its use was refused by the system of record";

/// One point change to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointChange {
    /// Points a confirmed order earns.
    Earn {
        /// The confirmed order; the txid is `earn-<order>`, so it earns once.
        order_id: String,
        /// The buyer, whose balance it moves.
        user_id: String,
        /// Points (at least 1).
        points: u64,
    },
    /// The points a paid order earned, taken back because it was cancelled (refunded).
    Unearn {
        /// The cancelled order; the txid is `unearn-<order>`, so it is taken back once. What
        /// it earned is read from the ledger (`earn-<order>`).
        order_id: String,
        /// The buyer, whose balance it moves (never below zero).
        user_id: String,
    },
    /// Points spent in Redis.
    Use(PointsUsed),
    /// A use given back in Redis.
    Refund(PointsRefunded),
}

impl PointChange {
    /// The ledger's unique id of this change.
    pub fn txid(&self) -> String {
        match self {
            Self::Earn { order_id, .. } => earn_txid(order_id),
            Self::Unearn { order_id, .. } => unearn_txid(order_id),
            Self::Use(used) => used.txid.clone(),
            Self::Refund(refund) => refund.txid.clone(),
        }
    }

    pub(super) fn user_id(&self) -> &str {
        match self {
            Self::Earn { user_id, .. } | Self::Unearn { user_id, .. } => user_id,
            Self::Use(used) => &used.user_id,
            Self::Refund(refund) => &refund.user_id,
        }
    }

    /// Points asked for, as a refusal announces them (a take-back is never refused).
    pub(super) fn amount(&self) -> u64 {
        match self {
            Self::Earn { points, .. } => *points,
            Self::Unearn { .. } => 0,
            Self::Use(used) => used.amount,
            Self::Refund(refund) => refund.amount,
        }
    }

    pub(super) fn refusal(&self) -> &'static str {
        match self {
            Self::Refund(_) => REFUND_REFUSED,
            _ => USE_REFUSED,
        }
    }

    /// Made in Redis (pending in the user's cache until settled).
    pub(super) fn made_in_redis(&self) -> bool {
        !matches!(self, Self::Earn { .. } | Self::Unearn { .. })
    }
}

/// A change the database refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its txid; the announcement's event id derives from it, so a replay dedupes.
    pub txid: String,
    /// Whose; the announcement is keyed by the user.
    pub user_id: String,
    /// Points it asked for.
    pub amount: u64,
    /// Why, as announced.
    pub reason: &'static str,
    /// The trace id it arrived with (a refund that waited for its use is not in the batch).
    pub trace_id: String,
    /// Found refused in the ledger (a replay): announced again, not refused again.
    pub replayed: bool,
}

/// What writing a list of changes did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PointsOutcome {
    /// Ledger rows that moved a balance.
    pub written: u64,
    /// Changes already in the ledger.
    pub duplicates: u64,
    /// Changes refused now (recorded with delta 0) or found refused before (a replay).
    pub refused: Vec<Refused>,
    /// Cache work, one per user touched, in commit order.
    pub settle: Vec<Settle>,
    /// Refunds parked now to wait for their use.
    pub parked: u64,
    /// Parked refunds decided now that their use arrived.
    pub unparked: u64,
}
