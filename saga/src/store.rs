//! The worker's side of `payments` in MySQL: claiming due payments under a lease, writing each
//! step fenced by that lease and by the row as it was read, letting go.
//!
//! Clocks: leases, `next_at` and "past `give_up_at`" are all judged by the database's clock
//! (`NOW(3)`), so instances on machines with skewed clocks still agree on who owns a row and
//! when it is due.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::mysql::MySqlRow;
use sqlx::{MySqlPool, Row};

use crate::payment::{Payment, RefundCause, Status};

/// The columns a worker reads.
const COLUMNS: &str = "order_id, sale_id, user_id, amount, payment_token, status, attempts, \
     charge_key, provider_ref, failure_code, refund_ref, refund_reason, refund_cause, retries, \
     give_up_at, published_at IS NOT NULL AS published, trace_id";

/// A payment this instance claimed, with the database's clock at the claim.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The row as claimed.
    pub payment: Payment,
    /// `NOW(3)` when it was claimed.
    pub claimed_at: DateTime<Utc>,
    /// When it was claimed, by this process's monotonic clock (to advance `claimed_at`).
    pub claimed: Instant,
}

impl Claimed {
    /// The database's clock now, estimated from the claim.
    pub fn now(&self) -> DateTime<Utc> {
        self.claimed_at
            + chrono::Duration::from_std(self.claimed.elapsed()).unwrap_or(chrono::Duration::zero())
    }
}

/// When a written payment is looked at next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Now, by this instance, which keeps (and renews) its lease.
    Keep,
    /// At this time, by any instance: the lease is let go.
    At(DateTime<Utc>),
    /// Never: nothing is left to do (final and announced); the lease is let go.
    Never,
}

/// `payments` for the worker.
#[derive(Clone)]
pub struct Store {
    /// The pool shared with the intake.
    pub db: MySqlPool,
    /// How long a claim or a write keeps a payment this instance's (`saga.lease_ms`).
    pub lease: Duration,
}

impl Store {
    /// Claims up to `limit` due payments nobody holds (or whose holder's lease ran out) for
    /// `owner`, oldest due first. Rows another instance is claiming at the same moment are
    /// skipped, not waited for (`SKIP LOCKED`).
    pub async fn claim(&self, owner: &str, limit: usize) -> Result<Vec<Claimed>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, NOW(3) AS db_now FROM payments \
             WHERE next_at <= NOW(3) AND (lease_until IS NULL OR lease_until < NOW(3)) \
             ORDER BY next_at LIMIT ? FOR UPDATE SKIP LOCKED"
        )))
        .bind(limit as u64)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let claimed = Instant::now();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(Claimed {
                payment: payment(row)?,
                claimed_at: row.try_get("db_now")?,
                claimed,
            });
        }
        let mut update = sqlx::QueryBuilder::new("UPDATE payments SET lease_owner = ");
        update
            .push_bind(owner)
            .push(", lease_until = NOW(3) + INTERVAL ")
            .push_bind(micros(self.lease))
            .push(" MICROSECOND WHERE order_id IN (");
        let mut ids = update.separated(", ");
        for claim in &out {
            ids.push_bind(claim.payment.order_id.as_str());
        }
        update.push(")");
        update.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Writes `after` over `before` if this instance still holds it and nobody changed it
    /// since (`false` otherwise: another instance took it over, or the intake changed its
    /// status or refund cause; the caller lets go).
    pub async fn save(
        &self,
        owner: &str,
        before: &Payment,
        after: &Payment,
        next: Next,
    ) -> Result<bool, sqlx::Error> {
        save_on(&self.db, self.lease, owner, before, after, next).await
    }

    /// Writes several payments' rows in one transaction (one commit, one flush to disk for
    /// them all), each fenced as [`Store::save`] fences it: whether each was written, in
    /// order. A row another instance took over is simply not written; the others are.
    pub async fn save_many(&self, writes: &[Write<'_>]) -> Result<Vec<bool>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let mut written = Vec::with_capacity(writes.len());
        for write in writes {
            written.push(
                save_on(
                    &mut *tx,
                    self.lease,
                    write.owner,
                    write.before,
                    &write.after,
                    write.next,
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Lets go of `order_id` (due again now, for whoever claims it next), if `owner` holds it.
    pub async fn release(&self, owner: &str, order_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE payments SET lease_owner = NULL, lease_until = NULL, \
             next_at = COALESCE(next_at, NOW(3)) WHERE order_id = ? AND lease_owner = ?",
        )
        .bind(order_id)
        .bind(owner)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Makes the payments put off by failures (unheld, with retries behind them, due later) due
    /// now: the provider answers again, so waiting out their backoff would only delay them.
    /// Trying a step early is always safe: a charge is looked up by its key before another.
    /// How many it made due.
    pub async fn due_now_after_outage(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE payments SET next_at = NOW(3) \
             WHERE next_at > NOW(3) AND lease_owner IS NULL AND retries > 0",
        )
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected())
    }

    /// The order's status in MySQL (`None`: not stored), for a payment whose order Redis no
    /// longer knows.
    pub async fn order_status(&self, order_id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT status FROM orders WHERE order_id = ?")
            .bind(order_id)
            .fetch_optional(&self.db)
            .await
    }

    /// How many payments are not final yet (all instances), and how old the oldest is, in
    /// milliseconds. Reads only rows with work left (index on `next_at`).
    pub async fn unfinished(&self) -> Result<(u64, u64), sqlx::Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, \
             COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(requested_at), NOW(3)), 0) AS age \
             FROM payments WHERE next_at IS NOT NULL \
             AND status IN ('pending', 'charged', 'declined', 'giving_up', 'refunding')",
        )
        .fetch_one(&self.db)
        .await?;
        let n: i64 = row.try_get("n")?;
        let age: i64 = row.try_get("age")?;
        Ok((
            u64::try_from(n).unwrap_or(0),
            u64::try_from(age / 1000).unwrap_or(0),
        ))
    }
}

/// One fenced write of [`Store::save_many`].
pub struct Write<'a> {
    /// The claim (lease owner) it is written under.
    pub owner: &'a str,
    /// The row as this instance last wrote it (the fence).
    pub before: &'a Payment,
    /// The row to write.
    pub after: Payment,
    /// When it is looked at next.
    pub next: Next,
}

/// The fenced write of [`Store::save`], on a pool or inside a transaction.
async fn save_on<'c, E>(
    db: E,
    lease: Duration,
    owner: &str,
    before: &Payment,
    after: &Payment,
    next: Next,
) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::MySql>,
{
    let (keep, next_at) = match next {
        Next::Keep => (true, None),
        Next::At(at) => (false, Some(at)),
        Next::Never => (false, None),
    };
    let due_now = keep;
    let done = matches!(next, Next::Never);
    let result = sqlx::query(
        "UPDATE payments SET status = ?, attempts = ?, charge_key = ?, provider_ref = ?, \
         failure_code = ?, refund_ref = ?, refund_reason = ?, refund_cause = ?, retries = ?, \
         charged_at = IF(? AND charged_at IS NULL, NOW(3), charged_at), \
         refunded_at = IF(? AND refunded_at IS NULL, NOW(3), refunded_at), \
         published_at = IF(?, COALESCE(published_at, NOW(3)), NULL), \
         next_at = IF(?, NOW(3), IF(?, NULL, ?)), \
         lease_owner = IF(?, lease_owner, NULL), \
         lease_until = IF(?, NOW(3) + INTERVAL ? MICROSECOND, NULL) \
         WHERE order_id = ? AND lease_owner = ? AND status = ? AND refund_cause <=> ?",
    )
    .bind(after.status.as_str())
    .bind(after.attempts)
    .bind(after.charge_key.as_deref())
    .bind(after.provider_ref.as_deref())
    .bind(after.failure_code.as_deref())
    .bind(after.refund_ref.as_deref())
    .bind(after.refund_reason.as_deref())
    .bind(after.refund_cause.map(RefundCause::as_str))
    .bind(after.retries)
    .bind(after.provider_ref.is_some())
    .bind(after.refund_ref.is_some())
    .bind(after.published)
    .bind(due_now)
    .bind(done)
    .bind(next_at)
    .bind(keep)
    .bind(keep)
    .bind(micros(lease))
    .bind(&before.order_id)
    .bind(owner)
    .bind(before.status.as_str())
    .bind(before.refund_cause.map(RefundCause::as_str))
    .execute(db)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Leases the rows of `order_ids` that nobody holds to `owner` for `lease`, inside the
/// intake's transaction that has just written them, and reads them back as claims: the
/// hand-off of fresh payments to this instance's idle workers without a claim of their own.
/// Rows held by someone (a re-sent request of a payment in flight) are left alone.
pub async fn lease_fresh(
    tx: &mut sqlx::MySqlConnection,
    owner: &str,
    lease: Duration,
    order_ids: &[&str],
) -> Result<Vec<Claimed>, sqlx::Error> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut update = sqlx::QueryBuilder::new("UPDATE payments SET lease_owner = ");
    update
        .push_bind(owner)
        .push(", lease_until = NOW(3) + INTERVAL ")
        .push_bind(micros(lease))
        .push(" MICROSECOND WHERE lease_owner IS NULL AND next_at IS NOT NULL AND order_id IN (");
    let mut ids = update.separated(", ");
    for id in order_ids {
        ids.push_bind(*id);
    }
    update.push(")");
    update.build().execute(&mut *tx).await?;
    let mut select = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS}, NOW(3) AS db_now FROM payments WHERE lease_owner = "
    ));
    select.push_bind(owner).push(" AND order_id IN (");
    let mut ids = select.separated(", ");
    for id in order_ids {
        ids.push_bind(*id);
    }
    select.push(")");
    let rows = select.build().fetch_all(&mut *tx).await?;
    let claimed = Instant::now();
    rows.iter()
        .map(|row| {
            Ok(Claimed {
                payment: payment(row)?,
                claimed_at: row.try_get("db_now")?,
                claimed,
            })
        })
        .collect()
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A row of `payments` (the [`COLUMNS`]).
pub fn payment(row: &MySqlRow) -> Result<Payment, sqlx::Error> {
    let text: String = row.try_get("status")?;
    let status = Status::parse(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "status".to_owned(),
        source: format!("unknown payment status {text:?}").into(),
    })?;
    let cause: Option<String> = row.try_get("refund_cause")?;
    let published: i64 = row.try_get("published")?;
    Ok(Payment {
        order_id: row.try_get("order_id")?,
        sale_id: row.try_get("sale_id")?,
        user_id: row.try_get("user_id")?,
        amount: row.try_get("amount")?,
        payment_token: row.try_get("payment_token")?,
        status,
        attempts: row.try_get("attempts")?,
        charge_key: row.try_get("charge_key")?,
        provider_ref: row.try_get("provider_ref")?,
        failure_code: row.try_get("failure_code")?,
        refund_ref: row.try_get("refund_ref")?,
        refund_reason: row.try_get("refund_reason")?,
        refund_cause: cause.as_deref().and_then(RefundCause::parse),
        retries: row.try_get("retries")?,
        give_up_at: row.try_get("give_up_at")?,
        published: published != 0,
        trace_id: row.try_get("trace_id")?,
    })
}
