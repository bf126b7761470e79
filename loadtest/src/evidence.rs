//! The facts the invariants are judged on, read after the run from what the shoppers were
//! told, from Redis (key layout of `flashgate_events::keys`) and from MySQL.

use std::collections::HashSet;

use anyhow::Context;
use fred::prelude::{HashesInterface, KeysInterface, Pool, StreamsInterface};
use serde::Serialize;
use sqlx::MySqlPool;

use flashgate_events::keys::SaleKeys;

/// How many ids a list of evidence shows (the count is always complete).
pub const SHOWN: usize = 10;

/// Ids, counted in full, the first [`SHOWN`] of them kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// How many there are.
    pub count: u64,
    /// The first few.
    pub first: Vec<String>,
}

impl Sample {
    /// The elements of `items` (counted all, the first [`SHOWN`] kept).
    pub fn of<I: IntoIterator<Item = String>>(items: I) -> Self {
        let mut sample = Self::default();
        for item in items {
            if sample.first.len() < SHOWN {
                sample.first.push(item);
            }
            sample.count += 1;
        }
        sample
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.count)?;
        if !self.first.is_empty() {
            let more = if self.count as usize > self.first.len() {
                ", …"
            } else {
                ""
            };
            write!(f, " ({}{more})", self.first.join(", "))?;
        }
        Ok(())
    }
}

/// The sale of a run, seen by the shoppers, by Redis and by MySQL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SaleEvidence {
    /// The sale.
    pub sale_id: u64,
    /// Units it offered.
    pub stock: u64,
    /// Most units per shopper.
    pub per_user_limit: u64,
    /// Distinct shoppers who asked to buy (each wants one unit).
    pub demand: u64,
    /// 202 answers the shoppers got.
    pub answered_admitted: u64,
    /// Shoppers who got more 202s than the limit allows.
    pub answered_over_limit: Sample,
    /// Units admitted, by the sale's counter in Redis.
    pub redis_admitted: u64,
    /// Units left in Redis after the run.
    pub redis_stock: i64,
    /// The lowest stock seen in Redis while the run went on (sampled).
    pub redis_stock_min_seen: i64,
    /// Buyers whose units in Redis pass the limit.
    pub redis_over_limit: Sample,
    /// Entries still in the sale's outbox (not yet in Kafka).
    pub outbox_left: u64,
    /// Order rows of the sale in MySQL (any status).
    pub mysql_orders: u64,
    /// Of those, rows the database's stock guard rejected.
    pub mysql_rejected: u64,
    /// The sale's `sold` column.
    pub mysql_sold: u64,
    /// Orders the shoppers were told about (202) that MySQL does not have.
    pub lost: Sample,
    /// Orders in MySQL no shopper was told about.
    pub unknown: Sample,
    /// Users whose units in MySQL pass the limit.
    pub mysql_over_limit: Sample,
}

/// The coupon policy of a run, seen by the shoppers, by the gateway and by MySQL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CouponEvidence {
    /// The policy.
    pub policy_id: u64,
    /// Coupons it offered.
    pub total: u64,
    /// Most coupons per shopper.
    pub per_user_limit: u64,
    /// Distinct shoppers who asked for a coupon.
    pub demand: u64,
    /// 201 answers the shoppers got.
    pub answered_issued: u64,
    /// Shoppers who got more 201s than the limit allows.
    pub answered_over_limit: Sample,
    /// `issued` of the policy, as the manager API shows it (live, from Redis).
    pub issued: u64,
    /// `remaining` of the policy, as the manager API shows it.
    pub remaining: i64,
    /// Coupon rows of the policy in MySQL, not counting rejected ones.
    pub mysql_coupons: u64,
    /// Coupon rows the database's guard rejected.
    pub mysql_rejected: u64,
    /// Coupons the shoppers were told about (201) that MySQL does not have.
    pub lost: Sample,
    /// Coupons in MySQL no shopper was told about.
    pub unknown: Sample,
    /// Users holding more coupons of the policy than the limit, in MySQL.
    pub mysql_over_limit: Sample,
}

/// Everything the invariants are judged on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// Answers that were 5xx or never came, by label.
    pub failures: Vec<(String, u64)>,
    /// The sale, when the run had one.
    pub sale: Option<SaleEvidence>,
    /// The coupon policy, when the run had one.
    pub coupons: Option<CouponEvidence>,
}

/// Units admitted and left in Redis, and the outbox length: what the drain waits on.
pub async fn redis_sale_counters(redis: &Pool, keys: &SaleKeys) -> anyhow::Result<(u64, i64, u64)> {
    let admitted: Option<u64> = redis.hget(&keys.sale, "admitted").await?;
    let stock: Option<i64> = redis.get(&keys.stock).await?;
    let outbox: u64 = redis.xlen(&keys.outbox).await?;
    Ok((admitted.unwrap_or(0), stock.unwrap_or(0), outbox))
}

/// Order rows of the sale in MySQL.
pub async fn mysql_order_count(db: &MySqlPool, sale_id: u64) -> anyhow::Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE sale_id = ?")
        .bind(sale_id)
        .fetch_one(db)
        .await?;
    Ok(count as u64)
}

/// Coupon rows of the policy in MySQL.
pub async fn mysql_coupon_count(db: &MySqlPool, policy_id: u64) -> anyhow::Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM coupons WHERE policy_id = ? AND status <> 'rejected'",
    )
    .bind(policy_id)
    .fetch_one(db)
    .await?;
    Ok(count as u64)
}

/// What the shoppers of a sale were told: who asked, and `(user, order id)` of each 202.
pub struct Told<'a> {
    /// Distinct shoppers who asked.
    pub demand: u64,
    /// `(user id, id)` of every success answer.
    pub granted: &'a [(String, String)],
}

impl Told<'_> {
    fn over_limit(&self, limit: u64) -> Sample {
        let mut per_user: std::collections::HashMap<&str, u64> = Default::default();
        for (user, _) in self.granted {
            *per_user.entry(user).or_default() += 1;
        }
        let mut over: Vec<String> = per_user
            .into_iter()
            .filter(|(_, n)| *n > limit)
            .map(|(user, n)| format!("{user}: {n}"))
            .collect();
        over.sort();
        Sample::of(over)
    }

    /// (told but not stored, stored but never told), comparing ids.
    fn compare(&self, stored: &[String]) -> (Sample, Sample) {
        let told: HashSet<&str> = self.granted.iter().map(|(_, id)| id.as_str()).collect();
        let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
        let mut lost: Vec<String> = told
            .iter()
            .filter(|id| !stored_set.contains(*id))
            .map(|id| (*id).to_owned())
            .collect();
        lost.sort();
        let unknown = stored
            .iter()
            .filter(|id| !told.contains(id.as_str()))
            .cloned();
        (Sample::of(lost), Sample::of(unknown))
    }
}

/// Reads the sale's evidence from Redis and MySQL; `stock_min_seen` comes from the sampler.
pub async fn sale(
    redis: &Pool,
    db: &MySqlPool,
    keys: &SaleKeys,
    sale_id: u64,
    told: Told<'_>,
    stock_min_seen: i64,
) -> anyhow::Result<SaleEvidence> {
    let (redis_admitted, redis_stock, outbox_left) = redis_sale_counters(redis, keys).await?;
    let (total, sold, limit): (u32, u32, u32) =
        sqlx::query_as("SELECT total, sold, per_user_limit FROM sales WHERE sale_id = ?")
            .bind(sale_id)
            .fetch_one(db)
            .await
            .context("reading the sale from MySQL")?;
    let limit = u64::from(limit);
    let buyers: std::collections::HashMap<String, u64> = redis.hgetall(&keys.buyers).await?;
    let mut redis_over: Vec<String> = buyers
        .into_iter()
        .filter(|(_, units)| *units > limit)
        .map(|(user, units)| format!("{user}: {units}"))
        .collect();
    redis_over.sort();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT order_id, status FROM orders WHERE sale_id = ? ORDER BY order_id")
            .bind(sale_id)
            .fetch_all(db)
            .await
            .context("reading the sale's orders from MySQL")?;
    let over: Vec<(String, u64)> = sqlx::query_as(
        "SELECT user_id, CAST(SUM(quantity) AS UNSIGNED) FROM orders \
         WHERE sale_id = ? AND status <> 'rejected' GROUP BY user_id \
         HAVING SUM(quantity) > ? ORDER BY user_id",
    )
    .bind(sale_id)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("reading units per user from MySQL")?;
    let stored: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    let (lost, unknown) = told.compare(&stored);
    Ok(SaleEvidence {
        sale_id,
        stock: u64::from(total),
        per_user_limit: limit,
        demand: told.demand,
        answered_admitted: told.granted.len() as u64,
        answered_over_limit: told.over_limit(limit),
        redis_admitted,
        redis_stock,
        redis_stock_min_seen: stock_min_seen.min(redis_stock),
        redis_over_limit: Sample::of(redis_over),
        outbox_left,
        mysql_orders: rows.len() as u64,
        mysql_rejected: rows.iter().filter(|(_, s)| s == "rejected").count() as u64,
        mysql_sold: u64::from(sold),
        lost,
        unknown,
        mysql_over_limit: Sample::of(over.into_iter().map(|(u, n)| format!("{u}: {n}"))),
    })
}

/// Reads the policy's evidence from MySQL; `issued` and `remaining` come from the manager API.
pub async fn coupons(
    db: &MySqlPool,
    policy: (u64, crate::manager::PolicyCounters),
    per_user_limit: u64,
    told: Told<'_>,
) -> anyhow::Result<CouponEvidence> {
    let (policy_id, counters) = policy;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(coupon_id AS CHAR), status FROM coupons WHERE policy_id = ? ORDER BY coupon_id",
    )
    .bind(policy_id)
    .fetch_all(db)
    .await
    .context("reading the policy's coupons from MySQL")?;
    let stored: Vec<String> = rows
        .iter()
        .filter(|(_, status)| status != "rejected")
        .map(|(id, _)| id.clone())
        .collect();
    let over: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, COUNT(*) FROM coupons WHERE policy_id = ? AND status <> 'rejected' \
         GROUP BY user_id HAVING COUNT(*) > ? ORDER BY user_id",
    )
    .bind(policy_id)
    .bind(per_user_limit)
    .fetch_all(db)
    .await
    .context("reading coupons per user from MySQL")?;
    let (lost, unknown) = told.compare(&stored);
    Ok(CouponEvidence {
        policy_id,
        total: counters.total_quantity,
        per_user_limit,
        demand: told.demand,
        answered_issued: told.granted.len() as u64,
        answered_over_limit: told.over_limit(per_user_limit),
        issued: counters.issued(),
        remaining: counters.remaining.unwrap_or(0),
        mysql_coupons: stored.len() as u64,
        mysql_rejected: (rows.len() - stored.len()) as u64,
        lost,
        unknown,
        mysql_over_limit: Sample::of(over.into_iter().map(|(u, n)| format!("{u}: {n}"))),
    })
}
