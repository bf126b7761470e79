//! Orders paid through the provider (lifecycle, `--pay-with provider`): how each ended in
//! MySQL, how long it took from the purchase's 202 to `paid` (MySQL's `paid_at -
//! admitted_at`, both written by Redis's clock), and the saga's `payments` rows of the sale.
//! The arithmetic is pure ([`PaymentEvidence::judge`], [`Spread::of`]); [`read_payments`]
//! reads MySQL.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::MySqlPool;

use super::sample::Sample;

/// Ids per `IN (...)` list: one query per this many orders.
const CHUNK: usize = 1_000;

/// Percentiles of a set of durations, in milliseconds (nearest rank: each is one of the
/// values, never an interpolation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Spread {
    /// The spread of `values` (ms); all zero when there are none.
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        // Nearest rank: the smallest value with at least q of them at or below it.
        let rank = |q: f64| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            count: n as u64,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: values[n - 1],
            mean_ms: values.iter().sum::<f64>() / n as f64,
        }
    }
}

/// How the wait for the payments ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settled {
    /// Whether every order paid through the provider was final in MySQL before the timeout.
    pub all_final: bool,
    /// How long after the traffic the wait ended, in seconds.
    pub seconds: f64,
    /// The orders still open (or not in MySQL) when it gave up.
    pub left: Sample,
}

/// One order paid through the provider, as MySQL holds it: its status and, once paid, the
/// time from its admission to its payment in milliseconds (Redis's clock both).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// `orders.status`.
    pub status: String,
    /// `paid_at - admitted_at`, when paid.
    pub to_paid_ms: Option<f64>,
}

/// The saga's rows of the sale in one status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rows {
    /// Rows.
    pub count: u64,
    /// Charge calls they made, summed.
    pub attempts: u64,
    /// The most charge calls one of them made.
    pub most_attempts: u64,
}

/// The orders the run paid through the provider, and how they ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PaymentEvidence {
    /// The payment token they were paid with.
    pub token: String,
    /// The status that token ends an order in (`paid`, or `cancelled` when declined).
    pub expected: String,
    /// Payments the gateway took (202; 200 when nothing was left to charge).
    pub requested: u64,
    /// Payment answers that were neither (409s, 5xx, no answer).
    pub refused: u64,
    /// The requested orders by their status in MySQL (`missing`: not in MySQL).
    pub ended: BTreeMap<String, u64>,
    /// Of the requested orders, those that ended `paid`.
    pub ended_paid: u64,
    /// Requested orders whose status in MySQL is not the expected one (`id: is expired`).
    pub not_as_expected: Sample,
    /// From the purchase's 202 to `paid`, of the orders that ended paid: MySQL's `paid_at -
    /// admitted_at` (both Redis's clock).
    pub time_to_paid: Spread,
    /// The saga's `payments` rows of the sale, by their status.
    pub rows: BTreeMap<String, Rows>,
    /// How the run's wait for them ended (`None` when the run did not wait).
    pub settled: Option<Settled>,
}

impl PaymentEvidence {
    /// Judges the orders `requested` (ids) by what MySQL holds of them (`stored`, by id),
    /// against the status `token` ends an order in.
    pub fn judge(token: &str, requested: &[String], stored: &HashMap<String, Stored>) -> Self {
        let expected = crate::options::payment_ends(token);
        let mut ended: BTreeMap<String, u64> = BTreeMap::new();
        let mut wrong = Vec::new();
        let mut to_paid = Vec::new();
        for id in requested {
            let status = stored.get(id).map_or("missing", |s| s.status.as_str());
            *ended.entry(status.to_owned()).or_default() += 1;
            if status != expected {
                wrong.push(format!("{id}: is {status}"));
            }
            if let Some(Stored {
                to_paid_ms: Some(ms),
                ..
            }) = stored.get(id).filter(|s| s.status == "paid")
            {
                to_paid.push(*ms);
            }
        }
        wrong.sort();
        Self {
            token: token.to_owned(),
            expected: expected.to_owned(),
            requested: requested.len() as u64,
            ended_paid: ended.get("paid").copied().unwrap_or(0),
            ended,
            not_as_expected: Sample::of(wrong),
            time_to_paid: Spread::of(to_paid),
            ..Self::default()
        }
    }

    /// The share of the requested orders that ended paid, in percent (100 when none).
    pub fn paid_percent(&self) -> f64 {
        if self.requested == 0 {
            100.0
        } else {
            100.0 * self.ended_paid as f64 / self.requested as f64
        }
    }
}

/// What MySQL holds of the orders `ids` (those it holds), chunked.
pub async fn stored_orders(
    db: &MySqlPool,
    ids: &[String],
) -> anyhow::Result<HashMap<String, Stored>> {
    let mut stored = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut query = sqlx::QueryBuilder::new(
            "SELECT order_id, status, \
             CAST(TIMESTAMPDIFF(MICROSECOND, admitted_at, paid_at) AS SIGNED) \
             FROM orders WHERE order_id IN (",
        );
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        query.push(")");
        let rows: Vec<(String, String, Option<i64>)> =
            query
                .build_query_as()
                .fetch_all(db)
                .await
                .context("reading the paid orders from MySQL")?;
        for (id, status, micros) in rows {
            let to_paid_ms = micros.map(|us| us as f64 / 1_000.0);
            stored.insert(id, Stored { status, to_paid_ms });
        }
    }
    Ok(stored)
}

/// Reads how the orders `requested` (paid through the provider with `token`) ended, and the
/// saga's rows of `sale_id`.
pub async fn read_payments(
    db: &MySqlPool,
    sale_id: u64,
    token: &str,
    requested: &[String],
) -> anyhow::Result<PaymentEvidence> {
    let stored = stored_orders(db, requested).await?;
    let mut evidence = PaymentEvidence::judge(token, requested, &stored);
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*), CAST(COALESCE(SUM(attempts), 0) AS SIGNED), \
         CAST(COALESCE(MAX(attempts), 0) AS SIGNED) FROM payments WHERE sale_id = ? \
         GROUP BY status ORDER BY status",
    )
    .bind(sale_id)
    .fetch_all(db)
    .await
    .context("reading the sale's payments from MySQL")?;
    evidence.rows = rows
        .into_iter()
        .map(|(status, count, attempts, most)| {
            let rows = Rows {
                count: count.max(0) as u64,
                attempts: attempts.max(0) as u64,
                most_attempts: most.max(0) as u64,
            };
            (status, rows)
        })
        .collect();
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks_of_the_values() {
        let spread = Spread::of((1..=100).rev().map(f64::from).collect());
        assert_eq!(spread.count, 100);
        assert_eq!(
            (spread.p50_ms, spread.p90_ms, spread.p99_ms, spread.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(spread.mean_ms, 50.5);

        let few = Spread::of(vec![30.0, 10.0, 20.0]);
        assert_eq!((few.p50_ms, few.p99_ms, few.max_ms), (20.0, 30.0, 30.0));
        assert_eq!(Spread::of(vec![7.5]).p50_ms, 7.5);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }

    fn stored(status: &str, to_paid_ms: Option<f64>) -> Stored {
        Stored {
            status: status.to_owned(),
            to_paid_ms,
        }
    }

    #[test]
    fn payments_are_judged_by_their_status_in_mysql_and_timed_only_when_paid() {
        let requested: Vec<String> = ["1-a", "1-b", "1-c", "1-d"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mysql: HashMap<String, Stored> = [
            ("1-a".to_owned(), stored("paid", Some(120.0))),
            ("1-b".to_owned(), stored("paid", Some(80.0))),
            ("1-c".to_owned(), stored("expired", None)),
        ]
        .into();

        let ok = PaymentEvidence::judge("tok_ok", &requested, &mysql);
        assert_eq!((ok.requested, ok.ended_paid), (4, 2));
        assert_eq!(ok.expected, "paid");
        assert_eq!(
            ok.ended,
            [
                ("expired".to_owned(), 1),
                ("missing".to_owned(), 1),
                ("paid".to_owned(), 2)
            ]
            .into()
        );
        assert_eq!(
            ok.not_as_expected.first,
            ["1-c: is expired", "1-d: is missing"]
        );
        assert_eq!(ok.paid_percent(), 50.0);
        assert_eq!(
            (
                ok.time_to_paid.count,
                ok.time_to_paid.p50_ms,
                ok.time_to_paid.max_ms
            ),
            (2, 80.0, 120.0)
        );

        // Declined: cancelled is what the run expects, and paid is the surprise.
        let declined = PaymentEvidence::judge("tok_declined", &requested[..2], &mysql);
        assert_eq!(declined.expected, "cancelled");
        assert_eq!(declined.not_as_expected.count, 2);
        assert_eq!(
            PaymentEvidence::judge("tok_ok", &[], &mysql).paid_percent(),
            100.0
        );
    }
}
