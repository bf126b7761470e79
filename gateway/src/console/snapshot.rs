//! One snapshot of the open sales for the console: each sale's live counters from Redis, its
//! persisted and ended units from MySQL, its admissions per second and its outbox's lag.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use flashgate_events::keys::Outbox;
use fred::prelude::StreamsInterface;
use serde::Serialize;
use sqlx::Row as _;

use crate::app::App;
use crate::sales::{state, store};

/// How many of the newest sales a snapshot looks at (the console is for the sales running now).
pub const SALES_SCANNED: u32 = 50;

/// One sale as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SaleLine {
    pub sale_id: u64,
    pub title: String,
    pub sku: String,
    /// `active` or `paused`.
    pub status: String,
    pub stock: u32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Units left in Redis (null when Redis does not hold the sale).
    pub remaining: Option<i64>,
    /// Units admitted in Redis.
    pub admitted: Option<i64>,
    /// Units persisted as sold in MySQL.
    pub persisted: u32,
    /// Units in orders paid, cancelled and expired (MySQL).
    pub paid: u64,
    pub cancelled: u64,
    pub expired: u64,
    /// Units admitted per second since the stream's previous snapshot (0 on the first).
    pub admitted_per_second: f64,
    /// Events waiting in the sale's outbox, and the age of the oldest, in seconds.
    pub outbox_length: u64,
    pub outbox_lag_seconds: f64,
}

/// What one event of the stream carries.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The sales not yet over, newest first.
    pub sales: Vec<SaleLine>,
}

/// What a stream remembers between snapshots, to turn counters into rates.
#[derive(Default)]
pub struct Rates {
    last: HashMap<u64, (Instant, i64)>,
}

impl Rates {
    /// Units per second since the last call for this sale (0 on the first).
    pub fn rate(&mut self, sale_id: u64, now: Instant, admitted: i64) -> f64 {
        let rate = match self.last.get(&sale_id) {
            Some((then, before)) => {
                let seconds = now.duration_since(*then).as_secs_f64();
                if seconds > 0.0 {
                    (admitted - before).max(0) as f64 / seconds
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last.insert(sale_id, (now, admitted));
        rate
    }
}

/// Takes a snapshot of the sales that are not over.
pub async fn take(app: &App, rates: &mut Rates) -> anyhow::Result<Snapshot> {
    let now = Utc::now();
    let sales: Vec<_> = store::list(&app.db, None, SALES_SCANNED)
        .await?
        .into_iter()
        .filter(|sale| sale.ends_at > now)
        .collect();
    let ended = ended_units(app, sales.iter().map(|s| s.sale_id).collect()).await?;
    let mut lines = Vec::with_capacity(sales.len());
    for sale in sales {
        let (remaining, admitted) =
            state::live_counters(&app.redis, &app.scripts, app.prefix(), sale.sale_id)
                .await
                .context("reading a sale's counters")?;
        let (outbox_length, outbox_lag_seconds) = outbox(app, sale.sale_id).await?;
        let units = |status: &str| {
            ended
                .get(&(sale.sale_id, status.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        lines.push(SaleLine {
            admitted_per_second: rates.rate(sale.sale_id, Instant::now(), admitted.unwrap_or(0)),
            paid: units("paid"),
            cancelled: units("cancelled"),
            expired: units("expired"),
            sale_id: sale.sale_id,
            title: sale.title,
            sku: sale.sku,
            status: sale.status,
            stock: sale.stock,
            starts_at: sale.starts_at,
            ends_at: sale.ends_at,
            remaining,
            admitted,
            persisted: sale.sold,
            outbox_length,
            outbox_lag_seconds,
        });
    }
    Ok(Snapshot {
        at: now,
        sales: lines,
    })
}

/// Units per (sale, order status) of the given sales, from MySQL.
async fn ended_units(app: &App, sale_ids: Vec<u64>) -> anyhow::Result<HashMap<(u64, String), u64>> {
    if sale_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let marks = vec!["?"; sale_ids.len()].join(",");
    let sql = format!(
        "SELECT sale_id, status, CAST(SUM(quantity) AS UNSIGNED) AS units FROM orders \
         WHERE sale_id IN ({marks}) AND status IN ('paid', 'cancelled', 'expired') \
         GROUP BY sale_id, status"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in sale_ids {
        query = query.bind(id);
    }
    let rows = query
        .fetch_all(&app.db)
        .await
        .context("counting a sale's ended orders")?;
    rows.iter()
        .map(|row| {
            Ok((
                (row.try_get("sale_id")?, row.try_get("status")?),
                row.try_get("units")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding ended orders")
}

/// The length of a sale's outbox and the age of its oldest entry, in seconds.
async fn outbox(app: &App, sale_id: u64) -> anyhow::Result<(u64, f64)> {
    let key = Outbox::Sale(sale_id).key(app.prefix());
    let length: u64 = app.redis.xlen(&key).await.context("reading an outbox")?;
    if length == 0 {
        return Ok((0, 0.0));
    }
    let first: Vec<(String, HashMap<String, String>)> = app
        .redis
        .xrange(&key, "-", "+", Some(1))
        .await
        .context("reading an outbox")?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let lag = first
        .first()
        .and_then(|(id, _)| id.split('-').next()?.parse::<u128>().ok())
        .map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0);
    Ok((length, lag))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_rate_is_the_admitted_units_since_the_last_snapshot_per_second() {
        let mut rates = Rates::default();
        let start = Instant::now();
        assert_eq!(rates.rate(1, start, 10), 0.0);
        assert_eq!(rates.rate(1, start + Duration::from_secs(2), 30), 10.0);
        assert_eq!(rates.rate(2, start, 5), 0.0, "each sale on its own");
        assert_eq!(
            rates.rate(1, start + Duration::from_secs(3), 20),
            0.0,
            "a counter that went down (a restore) is no negative rate"
        );
    }
}
