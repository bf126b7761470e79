//! The intake's side of `payments` in MySQL: a payment request becomes a `pending` row (once:
//! a re-sent request finds it), a refund request moves or marks the row of a paid order.

use chrono::{DateTime, Utc};
use flashgate_events::{PaymentRequested, RefundRequested};
use sqlx::{MySqlConnection, Row};

use crate::payment::{RefundCause, Status};

/// What a refund request does to the payment row of its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundIntake {
    /// No row: the order was paid without a charge (a zero amount, or a manager marked it
    /// paid). A `refunding` row with nothing to refund is made, to end the order.
    Create,
    /// The payment is done: it goes `refunding` for the cancel.
    Reopen,
    /// The payment is still in flight (or already refunding because its charge came late):
    /// the cancel is remembered and the payment goes on; it ends the order when it is done.
    Mark,
    /// A refund for a cancel is already on its way or done: a re-sent request.
    Duplicate,
}

/// What a refund request does to a row in `status` with `cause` (`None`: no row).
pub fn refund_intake(row: Option<(Status, Option<RefundCause>)>) -> RefundIntake {
    let Some((status, cause)) = row else {
        return RefundIntake::Create;
    };
    if cause == Some(RefundCause::Cancel) {
        return RefundIntake::Duplicate;
    }
    match status {
        Status::Completed | Status::Failed | Status::GivenUp | Status::Refunded => {
            RefundIntake::Reopen
        }
        Status::Pending
        | Status::Charged
        | Status::Declined
        | Status::GivingUp
        | Status::Refunding => RefundIntake::Mark,
    }
}

/// Stores a payment request as a `pending` row due now; `false` when it was stored before.
pub async fn store_payment(
    db: &mut MySqlConnection,
    request: &PaymentRequested,
    trace_id: &str,
) -> Result<bool, sqlx::Error> {
    // Every field was checked by `decode`: IGNORE only skips the duplicate key.
    let result = sqlx::query(
        "INSERT IGNORE INTO payments (order_id, sale_id, user_id, amount, payment_token, \
         status, attempts, pay_by, give_up_at, next_at, requested_at, trace_id) \
         VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, NOW(3), ?, ?)",
    )
    .bind(&request.order_id)
    .bind(request.sale_id)
    .bind(&request.user_id)
    .bind(request.amount)
    .bind(&request.payment_token)
    .bind(request.pay_by)
    .bind(request.give_up_at)
    .bind(request.requested_at)
    .bind(trace_id)
    .execute(db)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Applies a refund request to its order's payment, the row locked until the caller's
/// transaction ends; returns what it did.
pub async fn store_refund(
    tx: &mut MySqlConnection,
    request: &RefundRequested,
    trace_id: &str,
) -> Result<RefundIntake, sqlx::Error> {
    let row =
        sqlx::query("SELECT status, refund_cause FROM payments WHERE order_id = ? FOR UPDATE")
            .bind(&request.order_id)
            .fetch_optional(&mut *tx)
            .await?;
    let current = match row {
        Some(row) => {
            let status: String = row.try_get("status")?;
            let cause: Option<String> = row.try_get("refund_cause")?;
            let status = Status::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "status".to_owned(),
                source: format!("unknown payment status {status:?}").into(),
            })?;
            Some((status, cause.as_deref().and_then(RefundCause::parse)))
        }
        None => None,
    };
    let intake = refund_intake(current);
    let cancel = RefundCause::Cancel.as_str();
    let reason = reason(&request.reason);
    match intake {
        RefundIntake::Create => {
            let at: DateTime<Utc> = request.requested_at;
            sqlx::query(
                "INSERT INTO payments (order_id, sale_id, user_id, amount, payment_token, \
                 status, attempts, refund_reason, refund_cause, pay_by, give_up_at, next_at, \
                 requested_at, trace_id) \
                 VALUES (?, ?, ?, 0, '', 'refunding', 0, ?, ?, ?, ?, NOW(3), ?, ?)",
            )
            .bind(&request.order_id)
            .bind(request.sale_id)
            .bind(&request.user_id)
            .bind(&reason)
            .bind(cancel)
            .bind(at)
            .bind(at)
            .bind(at)
            .bind(trace_id)
            .execute(&mut *tx)
            .await?;
        }
        RefundIntake::Reopen => {
            sqlx::query(
                "UPDATE payments SET status = 'refunding', refund_cause = ?, refund_reason = ?, \
                 retries = 0, published_at = NULL, next_at = NOW(3) WHERE order_id = ?",
            )
            .bind(cancel)
            .bind(&reason)
            .bind(&request.order_id)
            .execute(&mut *tx)
            .await?;
        }
        RefundIntake::Mark => {
            sqlx::query(
                "UPDATE payments SET refund_cause = ?, refund_reason = ? WHERE order_id = ?",
            )
            .bind(cancel)
            .bind(&reason)
            .bind(&request.order_id)
            .execute(&mut *tx)
            .await?;
        }
        RefundIntake::Duplicate => {}
    }
    Ok(intake)
}

/// The cancel's reason as the column holds it: at most 200 characters.
fn reason(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_request_reopens_a_done_payment_marks_one_in_flight_and_skips_a_resend() {
        assert_eq!(refund_intake(None), RefundIntake::Create);
        for done in [
            Status::Completed,
            Status::Failed,
            Status::GivenUp,
            Status::Refunded,
        ] {
            assert_eq!(
                refund_intake(Some((done, None))),
                RefundIntake::Reopen,
                "{done:?}"
            );
        }
        // A late charge refunded before the cancel came: the order still waits for its end.
        assert_eq!(
            refund_intake(Some((Status::Refunded, Some(RefundCause::Late)))),
            RefundIntake::Reopen
        );
        for in_flight in [
            Status::Pending,
            Status::Charged,
            Status::Declined,
            Status::GivingUp,
            Status::Refunding,
        ] {
            assert_eq!(refund_intake(Some((in_flight, None))), RefundIntake::Mark);
        }
        for status in Status::ALL {
            assert_eq!(
                refund_intake(Some((status, Some(RefundCause::Cancel)))),
                RefundIntake::Duplicate
            );
        }
    }

    #[test]
    fn a_long_reason_is_cut_to_its_column() {
        assert_eq!(reason(&"é".repeat(300)).chars().count(), 200);
        assert_eq!(reason("cancelled_by_shopper"), "cancelled_by_shopper");
    }
}
