//! Why the persister dead-letters a message, as a short stable code: the `reason_code` header
//! of its letters, the `reason` label of `flashgate_persister_dead_letters_total`, and what
//! `dlq list --reason` and `dlq replay --reason` filter on. The letter's `reason` header keeps
//! the sentence with the details (which sale, which field, which MySQL error).

/// Why a message can never be stored as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not a JSON envelope, or its data does not have its type's shape (or no payload at all).
    Undecodable,
    /// An event type or envelope version this persister does not know.
    Unsupported,
    /// Decodes, but breaks a rule of its type: an id empty or too long, a zero quantity, an
    /// amount that is not quantity × unit price, a refund whose txid is not its use's.
    Invalid,
    /// An admission for a sale MySQL does not hold.
    UnknownSale,
    /// A coupon claimed under a policy MySQL does not hold.
    UnknownCouponPolicy,
    /// An order's end (cancelled, expired, paid) whose order and sale MySQL both lack.
    OrphanOrderEnd,
    /// A coupon's redemption change whose coupon and policy MySQL both lack.
    OrphanCouponChange,
    /// MySQL refuses it for good: a constraint, a value that does not fit its column.
    RefusedByDatabase,
}

impl Reason {
    /// Every reason, in the order of their index (see [`Reason::index`]).
    pub const ALL: [Reason; 8] = [
        Reason::Undecodable,
        Reason::Unsupported,
        Reason::Invalid,
        Reason::UnknownSale,
        Reason::UnknownCouponPolicy,
        Reason::OrphanOrderEnd,
        Reason::OrphanCouponChange,
        Reason::RefusedByDatabase,
    ];

    /// How many reasons there are (the size of a per-reason array of counters).
    pub const COUNT: usize = Self::ALL.len();

    /// The stable code, as written in letters and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::Unsupported => "unsupported",
            Self::Invalid => "invalid",
            Self::UnknownSale => "unknown_sale",
            Self::UnknownCouponPolicy => "unknown_coupon_policy",
            Self::OrphanOrderEnd => "orphan_order_end",
            Self::OrphanCouponChange => "orphan_coupon_change",
            Self::RefusedByDatabase => "refused_by_database",
        }
    }

    /// Its place in [`Reason::ALL`], for arrays of counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason of `code`, if it is one of the persister's.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }

    /// The reason of a message [`crate::decode::event`] turned down with `detail`.
    pub fn of_decode_error(detail: &str) -> Self {
        if detail == "empty message" || detail.starts_with("undecodable") {
            Self::Undecodable
        } else if detail.starts_with("unsupported version")
            || detail.starts_with("unknown event type")
        {
            Self::Unsupported
        } else {
            Self::Invalid
        }
    }

    /// The reason of a letter without a `reason_code` header (written before it existed),
    /// from the sentence in its `reason` header; `None` when it is not one the persister
    /// writes (another service's letter).
    pub fn from_sentence(sentence: &str) -> Option<Self> {
        let reason = if sentence.starts_with("sale ") && sentence.ends_with(" does not exist") {
            Self::UnknownSale
        } else if sentence == UNKNOWN_COUPON_POLICY {
            Self::UnknownCouponPolicy
        } else if sentence == ORPHAN_ORDER_END {
            Self::OrphanOrderEnd
        } else if sentence == ORPHAN_COUPON_CHANGE {
            Self::OrphanCouponChange
        } else if sentence.starts_with(REFUSED_BY_DATABASE) {
            Self::RefusedByDatabase
        } else if sentence == "empty message"
            || sentence.starts_with("undecodable")
            || sentence.starts_with("unsupported version")
            || sentence.starts_with("unknown event type")
        {
            Self::of_decode_error(sentence)
        } else {
            return None;
        };
        Some(reason)
    }
}

/// The sentence of [`Reason::UnknownCouponPolicy`].
pub const UNKNOWN_COUPON_POLICY: &str = "its coupon policy does not exist";
/// The sentence of [`Reason::OrphanOrderEnd`].
pub const ORPHAN_ORDER_END: &str = "neither its order nor the order's sale exists";
/// The sentence of [`Reason::OrphanCouponChange`].
pub const ORPHAN_COUPON_CHANGE: &str = "neither its coupon nor the coupon's policy exists";
/// How the sentence of [`Reason::RefusedByDatabase`] starts (MySQL's error follows).
pub const REFUSED_BY_DATABASE: &str = "the database refuses it";

/// The sentence of [`Reason::UnknownSale`].
pub fn unknown_sale(sale_id: u64) -> String {
    format!("sale {sale_id} does not exist")
}

/// Counts by reason, indexed by [`Reason::index`].
pub type ByReason = [u64; Reason::COUNT];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_its_reason_and_codes_are_distinct() {
        for (index, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), index);
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(Reason::from_code("sale_unknown"), None);
    }

    #[test]
    fn decode_errors_are_told_apart_by_their_sentence() {
        let cases = [
            ("empty message", Reason::Undecodable),
            ("undecodable: expected value at line 1", Reason::Undecodable),
            (
                "undecodable data: missing field `sale_id`",
                Reason::Undecodable,
            ),
            (
                "unsupported version 9 of order.admitted",
                Reason::Unsupported,
            ),
            ("unknown event type `order.shipped`", Reason::Unsupported),
            ("quantity must be at least 1", Reason::Invalid),
            ("order_id must have 1 to 40 characters", Reason::Invalid),
        ];
        for (detail, reason) in cases {
            assert_eq!(Reason::of_decode_error(detail), reason, "{detail}");
        }
    }

    #[test]
    fn letters_written_before_the_code_are_classified_from_their_sentence() {
        let cases = [
            (unknown_sale(42), Some(Reason::UnknownSale)),
            (
                UNKNOWN_COUPON_POLICY.to_owned(),
                Some(Reason::UnknownCouponPolicy),
            ),
            (ORPHAN_ORDER_END.to_owned(), Some(Reason::OrphanOrderEnd)),
            (
                ORPHAN_COUPON_CHANGE.to_owned(),
                Some(Reason::OrphanCouponChange),
            ),
            (
                format!("{REFUSED_BY_DATABASE}: 1406: Data too long"),
                Some(Reason::RefusedByDatabase),
            ),
            ("undecodable: eof".to_owned(), Some(Reason::Undecodable)),
            (
                "unknown event type `x`".to_owned(),
                Some(Reason::Unsupported),
            ),
            // Another service's sentence is not guessed at.
            ("the provider answered 500".to_owned(), None),
            ("quantity must be at least 1".to_owned(), None),
        ];
        for (sentence, reason) in cases {
            assert_eq!(Reason::from_sentence(&sentence), reason, "{sentence}");
        }
    }
}
