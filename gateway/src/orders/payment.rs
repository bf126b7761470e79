//! An order's payment as its shopper sees it: from the saga's `payments` row in MySQL once the
//! saga took the request, from Redis's record while the request is still on its way.

use anyhow::Context;
use serde::Serialize;
use sqlx::{MySqlPool, Row};

use crate::failure::Failure;

/// One order's payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    /// `pending`, `completed`, `failed`, `given_up`, `refund_pending` or `refunded`.
    pub status: String,
    /// What is (or was) charged, integer minor units.
    pub amount: u64,
    /// Calls made to the provider so far.
    pub attempts: u32,
    /// The provider's charge id, once a charge exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
    /// Why it failed (`card_declined`, `invalid_token`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
}

/// The status a shopper sees for the saga's internal step `status` (see the saga's
/// `payments.status`): the steps between a charge and its record are all still `pending`.
pub fn shown_status(status: &str) -> &'static str {
    match status {
        "completed" => "completed",
        "declined" | "failed" => "failed",
        "given_up" => "given_up",
        "refunding" => "refund_pending",
        "refunded" => "refunded",
        _ => "pending",
    }
}

/// The payment of order `order_id`, whose shown status is `status`: the saga's row when there
/// is one; else, while Redis's record says a charge is in flight (`paying_amount`), a
/// `pending` payment of that amount. Orders that never asked for a payment read nothing (no
/// query: reserved, confirmed or rejected).
pub async fn of(
    db: &MySqlPool,
    order_id: &str,
    status: &str,
    paying_amount: Option<u64>,
) -> Result<Option<PaymentView>, Failure> {
    if matches!(status, "reserved" | "confirmed" | "rejected") {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT status, amount, attempts, provider_ref, failure_code FROM payments \
         WHERE order_id = ?",
    )
    .bind(order_id)
    .fetch_optional(db)
    .await
    .context("reading payment")
    .map_err(Failure::Mysql)?;
    Ok(match row {
        // A row with nothing charged and no charge at the provider is the saga's record of a
        // refund it did not need to make (a cancelled order paid outside flashgate): no
        // payment to show.
        Some(row) => Some(from_row(&row).map_err(Failure::mysql)?)
            .filter(|p| p.amount > 0 || p.provider_ref.is_some()),
        None => paying_amount.map(|amount| PaymentView {
            status: "pending".to_owned(),
            amount,
            attempts: 0,
            provider_ref: None,
            failure_code: None,
        }),
    })
}

fn from_row(row: &sqlx::mysql::MySqlRow) -> Result<PaymentView, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(PaymentView {
        status: shown_status(&status).to_owned(),
        amount: row.try_get("amount")?,
        attempts: row.try_get("attempts")?,
        provider_ref: row.try_get("provider_ref")?,
        failure_code: row.try_get("failure_code")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saga_steps_between_a_charge_and_its_record_read_as_pending() {
        for step in ["pending", "charged", "giving_up"] {
            assert_eq!(shown_status(step), "pending", "{step}");
        }
        assert_eq!(shown_status("declined"), "failed");
        assert_eq!(shown_status("refunding"), "refund_pending");
        assert_eq!(shown_status("completed"), "completed");
    }
}
