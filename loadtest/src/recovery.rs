//! Recovery after a provider outage (`flashgate-loadtest recovery`): from the saga's
//! `payments` rows of a sale, how long after the provider came back payments were still
//! older than a limit (1 s) — the time until no payment is older than that.
//!
//! A payment is open from its `requested_at` (Redis's clock, when the gateway took it) until
//! it ended: a completed one when its order was paid (`orders.paid_at`, Redis's clock again:
//! the saga's `pay` step), another final one when the saga recorded its outcome
//! (`published_at`, else `updated_at`: the database's clock). It is "older than the limit"
//! from `requested_at + limit` until it ended. On one machine the three clocks are the same.

use std::fmt::Write;

use anyhow::Context;
use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::MySqlPool;

/// One payment's open span, in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// When the gateway took it.
    pub requested_ms: i64,
    /// When it ended; `None` while still open.
    pub ended_ms: Option<i64>,
}

/// How the payments of a sale recovered from an outage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// When the provider answered again, ms since the epoch.
    pub back_at_ms: i64,
    /// The age a payment must not pass, in ms.
    pub limit_ms: i64,
    /// How long after `back_at_ms` until no payment was older than the limit (0 when none
    /// was at that moment); `None` when a payment older than it is still open.
    pub recovered_after_ms: Option<i64>,
    /// Payments of the sale.
    pub payments: u64,
    /// Of those, still open now.
    pub open: u64,
    /// Of those, open when the provider came back (taken before it, not ended yet).
    pub backlog: u64,
    /// Of those, older than the limit at some moment.
    pub over_limit: u64,
    /// The most time one payment took, in ms (of those that ended).
    pub longest_ms: i64,
}

/// How `spans` recovered once the provider came back at `back_at_ms`: the first instant from
/// then on at which no payment was older than `limit_ms`.
pub fn recovery(spans: &[Span], back_at_ms: i64, limit_ms: i64) -> Recovery {
    // Each payment is over the limit from requested + limit until it ended (forever when
    // still open): the answer is the end of the run of such intervals that covers back_at.
    let mut over: Vec<(i64, i64)> = spans
        .iter()
        .filter_map(|s| {
            let from = s.requested_ms + limit_ms;
            let until = s.ended_ms.unwrap_or(i64::MAX);
            (until > from).then_some((from, until))
        })
        .collect();
    over.sort_unstable();
    let mut clear_at = back_at_ms;
    for (from, until) in &over {
        if *from > clear_at {
            break;
        }
        clear_at = clear_at.max(*until);
    }
    Recovery {
        back_at_ms,
        limit_ms,
        recovered_after_ms: (clear_at != i64::MAX).then(|| clear_at - back_at_ms),
        payments: spans.len() as u64,
        open: spans.iter().filter(|s| s.ended_ms.is_none()).count() as u64,
        backlog: spans
            .iter()
            .filter(|s| s.requested_ms < back_at_ms && s.ended_ms.is_none_or(|e| e > back_at_ms))
            .count() as u64,
        over_limit: over.len() as u64,
        longest_ms: spans
            .iter()
            .filter_map(|s| Some(s.ended_ms? - s.requested_ms))
            .max()
            .unwrap_or(0),
    }
}

impl Recovery {
    /// One markdown paragraph.
    pub fn markdown(&self, sale_id: u64) -> String {
        let mut out = String::new();
        let back = chrono::DateTime::from_timestamp_millis(self.back_at_ms)
            .map_or_else(|| self.back_at_ms.to_string(), |t| t.to_rfc3339());
        let recovered = match self.recovered_after_ms {
            Some(ms) => format!("**{:.1} s**", ms as f64 / 1_000.0),
            None => "**not yet** (a payment older than the limit is still open)".to_owned(),
        };
        let _ = write!(
            out,
            "Recovery of sale {sale_id}'s payments: the provider answered again at {back}; \
             {recovered} later no payment was older than {} ms. Payments {}, open when it came \
             back {}, older than {} ms at some moment {}, still open {}; the longest took {:.1} s.",
            self.limit_ms,
            self.payments,
            self.backlog,
            self.limit_ms,
            self.over_limit,
            self.open,
            self.longest_ms as f64 / 1_000.0
        );
        out
    }
}

/// The open spans of the saga's payments of `sale_id`, as the module says.
pub async fn read_spans(db: &MySqlPool, sale_id: u64) -> anyhow::Result<Vec<Span>> {
    let rows: Vec<(NaiveDateTime, Option<NaiveDateTime>)> = sqlx::query_as(
        "SELECT p.requested_at, CASE \
           WHEN p.status = 'completed' THEN COALESCE(o.paid_at, p.published_at, p.updated_at) \
           WHEN p.status IN ('failed', 'given_up', 'refunded') \
             THEN COALESCE(p.published_at, p.updated_at) \
         END \
         FROM payments p LEFT JOIN orders o ON o.order_id = p.order_id \
         WHERE p.sale_id = ?",
    )
    .bind(sale_id)
    .fetch_all(db)
    .await
    .context("reading the sale's payments from MySQL")?;
    let ms = |t: NaiveDateTime| t.and_utc().timestamp_millis();
    Ok(rows
        .into_iter()
        .map(|(requested, ended)| Span {
            requested_ms: ms(requested),
            ended_ms: ended.map(ms),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(requested_ms: i64, ended_ms: Option<i64>) -> Span {
        Span {
            requested_ms,
            ended_ms,
        }
    }

    #[test]
    fn recovery_ends_when_the_last_backlog_payment_older_than_the_limit_ended() {
        // Outage until 10_000: payments taken at 2_000..9_000 wait; they end at 10_300 ..
        // 12_500 as the backlog drains; fresh ones take 100 ms.
        let spans = [
            span(1_000, Some(1_100)),
            span(2_000, Some(10_300)),
            span(5_000, Some(11_000)),
            span(9_000, Some(12_500)),
            span(10_100, Some(10_200)),
            // Taken during the drain, done in 900 ms: never older than 1 s.
            span(11_500, Some(12_400)),
            span(13_000, Some(13_100)),
        ];
        let r = recovery(&spans, 10_000, 1_000);
        assert_eq!(r.recovered_after_ms, Some(2_500));
        assert_eq!((r.payments, r.open, r.backlog, r.over_limit), (7, 0, 3, 3));
        assert_eq!(r.longest_ms, 8_300);
        assert!(
            r.markdown(4).contains("**2.5 s** later"),
            "{}",
            r.markdown(4)
        );
    }

    #[test]
    fn a_chain_of_overlapping_old_payments_extends_recovery_and_a_later_one_does_not() {
        let spans = [
            span(8_000, Some(10_500)),
            // Over the limit from 10_200 (before 10_500) until 11_800: the chain goes on.
            span(9_200, Some(11_800)),
            // Over the limit from 12_000: after the clear instant 11_800; a later hiccup.
            span(11_000, Some(12_600)),
        ];
        assert_eq!(
            recovery(&spans, 10_000, 1_000).recovered_after_ms,
            Some(1_800)
        );
    }

    #[test]
    fn nothing_old_at_the_return_is_zero_and_a_stuck_payment_is_never() {
        let quick = [span(9_500, Some(9_600)), span(10_050, Some(10_150))];
        assert_eq!(recovery(&quick, 10_000, 1_000).recovered_after_ms, Some(0));
        let stuck = [span(5_000, None), span(10_050, Some(10_150))];
        let r = recovery(&stuck, 10_000, 1_000);
        assert_eq!(r.recovered_after_ms, None);
        assert_eq!((r.open, r.backlog), (1, 1));
        assert!(r.markdown(1).contains("not yet"));
        assert_eq!(recovery(&[], 10_000, 1_000).recovered_after_ms, Some(0));
    }
}
