//! Reading a run's evidence after the traffic, from Redis (key layout of
//! `flashgate_events::keys`) and MySQL, next to what the shoppers were told.

use anyhow::Context;
use flashgate_config::Settings;
use flashgate_events::keys::SaleKeys;
use fred::prelude::{HashesInterface, KeysInterface, Pool, StreamsInterface};
use sqlx::MySqlPool;

use super::facts::{CouponEvidence, Evidence, SaleEvidence, Sample, Told};
use crate::manager::PolicyCounters;
use crate::scenario::user_id;
use crate::tally::Tally;

/// The clients a run reads its evidence with.
pub struct Backends {
    /// Redis, with a long command timeout (whole-sale reads after the run).
    pub redis: Pool,
    /// MySQL.
    pub db: MySqlPool,
}

impl Backends {
    /// Connects to the Redis and MySQL of `settings`.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let mut redis = settings.redis.clone();
        redis.command_timeout_ms = 30_000;
        redis.pool_size = 2;
        Ok(Self {
            redis: redis.connect_pool().await.context("connecting to Redis")?,
            db: settings
                .mysql
                .connect()
                .await
                .context("connecting to MySQL")?,
        })
    }
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

/// Reads the evidence of a run whose answers are `all`.
pub async fn gather(
    backends: &Backends,
    all: &Tally,
    tag: &str,
    sale: Option<(&SaleKeys, u64)>,
    stock_min_seen: i64,
    policy: Option<(u64, PolicyCounters)>,
    per_user_limit: u64,
) -> anyhow::Result<Evidence> {
    let named = |granted: &[(u32, String)]| -> Vec<(String, String)> {
        granted
            .iter()
            .map(|(n, id)| (user_id(tag, *n), id.clone()))
            .collect()
    };
    let sale = match sale {
        Some((keys, sale_id)) => {
            let granted = named(&all.orders);
            let told = Told {
                demand: all.buyers_asked.len() as u64,
                granted: &granted,
            };
            Some(
                read_sale(
                    &backends.redis,
                    &backends.db,
                    keys,
                    sale_id,
                    told,
                    stock_min_seen,
                )
                .await?,
            )
        }
        None => None,
    };
    let coupons = match policy {
        Some(policy) => {
            let granted = named(&all.coupons);
            let told = Told {
                demand: all.claimers_asked.len() as u64,
                granted: &granted,
            };
            Some(read_coupons(&backends.db, policy, per_user_limit, told).await?)
        }
        None => None,
    };
    Ok(Evidence {
        failures: all.failures().into_iter().collect(),
        sale,
        coupons,
    })
}

/// Reads the sale's evidence from Redis and MySQL; `stock_min_seen` comes from the sampler.
pub async fn read_sale(
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
pub async fn read_coupons(
    db: &MySqlPool,
    policy: (u64, PolicyCounters),
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
