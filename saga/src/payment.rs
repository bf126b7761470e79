//! A payment as the saga knows it: one row of `payments` (migration 0006), its status and why
//! its charge would be refunded.

use chrono::{DateTime, Utc};

/// Where a payment is in the saga. The first five still have work; the last four are final
/// (their outcome is announced once, then nothing is left to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not charged yet: an attempt is due, or one's outcome is unknown.
    Pending,
    /// The provider took the money; the order is to be marked paid in Redis.
    Charged,
    /// The provider refused; the order is to be cancelled in Redis.
    Declined,
    /// Past `give_up_at` without a charge: the order is to expire, and a charge found late is
    /// to be refunded.
    GivingUp,
    /// A charge is to be given back (then, for a paid order's cancel, the order ended).
    Refunding,
    /// Charged, and the order is paid.
    Completed,
    /// Declined, and the order is cancelled.
    Failed,
    /// Never charged in time; the order expired.
    GivenUp,
    /// The charge was given back.
    Refunded,
}

impl Status {
    /// Every status, for parsing and tests.
    pub const ALL: [Status; 9] = [
        Status::Pending,
        Status::Charged,
        Status::Declined,
        Status::GivingUp,
        Status::Refunding,
        Status::Completed,
        Status::Failed,
        Status::GivenUp,
        Status::Refunded,
    ];

    /// As stored in `payments.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Charged => "charged",
            Status::Declined => "declined",
            Status::GivingUp => "giving_up",
            Status::Refunding => "refunding",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::GivenUp => "given_up",
            Status::Refunded => "refunded",
        }
    }

    /// The status stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the saga is done deciding it (only announcing may be left).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::GivenUp | Status::Refunded
        )
    }

    /// What a shopper is shown (`GET /v1/orders/{id}`, the gateway reads the table).
    pub fn shown(self) -> &'static str {
        match self {
            Status::Pending | Status::Charged | Status::GivingUp => "pending",
            Status::Completed => "completed",
            Status::Declined | Status::Failed => "failed",
            Status::GivenUp => "given_up",
            Status::Refunding => "refund_pending",
            Status::Refunded => "refunded",
        }
    }
}

/// Why a payment is refunded; decides how the order ends after the money went back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundCause {
    /// A paid order is being cancelled (Redis `refunding`): after the refund, the order is
    /// ended `cancelled` with the Redis `refunded` op (units and discounts back).
    Cancel,
    /// The charge went through after its order had ended, or after the saga gave up: the
    /// order already ended (or is expiring); only the money goes back.
    Late,
}

impl RefundCause {
    /// As stored in `payments.refund_cause`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundCause::Cancel => "cancel",
            RefundCause::Late => "late",
        }
    }

    /// The cause stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cancel" => Some(RefundCause::Cancel),
            "late" => Some(RefundCause::Late),
            _ => None,
        }
    }
}

/// One payment, as read when it was claimed and as changed since by this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The order paid for (primary key).
    pub order_id: String,
    /// Its sale.
    pub sale_id: u64,
    /// The payer.
    pub user_id: String,
    /// What to charge, integer minor units (0: a row made for a refund with no charge).
    pub amount: u64,
    /// Handed to the provider as is.
    pub payment_token: String,
    /// Where it is.
    pub status: Status,
    /// Charge calls made.
    pub attempts: u32,
    /// Idempotency key of the latest charge call (`<order>:<attempt>`).
    pub charge_key: Option<String>,
    /// The provider's charge id, once one succeeded.
    pub provider_ref: Option<String>,
    /// Why it failed.
    pub failure_code: Option<String>,
    /// The provider's refund id, once the money went back.
    pub refund_ref: Option<String>,
    /// Why it is refunded.
    pub refund_reason: Option<String>,
    /// How the order ends after the refund.
    pub refund_cause: Option<RefundCause>,
    /// Transient failures of the current step in a row (the backoff's exponent).
    pub retries: u32,
    /// No charge attempt starts after it (`pay_by` + `payments.grace_seconds`).
    pub give_up_at: DateTime<Utc>,
    /// Whether its final outcome has been announced.
    pub published: bool,
    /// The trace of the request that asked for it.
    pub trace_id: String,
}

impl Payment {
    /// Whether a charge call was made whose outcome this instance does not know: it is looked
    /// up by its key before another is made.
    pub fn outstanding_key(&self) -> Option<&str> {
        match (self.status, self.attempts, &self.charge_key) {
            (Status::Pending | Status::GivingUp, 1.., Some(key)) => Some(key),
            _ => None,
        }
    }
}

/// The idempotency key of charge attempt `attempt` of `order_id`: a retry after a crash or a
/// timeout reuses nothing by accident, and a lookup finds exactly that attempt.
pub fn charge_key(order_id: &str, attempt: u32) -> String {
    format!("{order_id}:{attempt}")
}

/// The idempotency key of the refund of `order_id`'s charge: at most one refund per order.
pub fn refund_key(order_id: &str) -> String {
    format!("refund:{order_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_as_stored_and_shows_as_the_contract_says() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("paid"), None);
        let shown: Vec<_> = Status::ALL.iter().map(|s| s.shown()).collect();
        assert_eq!(
            shown,
            [
                "pending",
                "pending",
                "failed",
                "pending",
                "refund_pending",
                "completed",
                "failed",
                "given_up",
                "refunded"
            ]
        );
        assert_eq!(Status::ALL.iter().filter(|s| s.is_final()).count(), 4);
    }

    #[test]
    fn keys_name_the_order_and_the_attempt() {
        assert_eq!(charge_key("7-ab", 3), "7-ab:3");
        assert_eq!(refund_key("7-ab"), "refund:7-ab");
        assert_eq!(RefundCause::parse("cancel"), Some(RefundCause::Cancel));
        assert_eq!(
            RefundCause::parse(RefundCause::Late.as_str()),
            Some(RefundCause::Late)
        );
        assert_eq!(RefundCause::parse("other"), None);
    }
}
