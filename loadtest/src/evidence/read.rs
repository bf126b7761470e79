//! Reading a run's evidence after the traffic, from Redis (key layout of
//! `flashgate_events::keys`) and MySQL, next to what the shoppers were told.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::NaiveDateTime;
use flashgate_config::Settings;
use flashgate_events::keys::{SaleKeys, is_rate_limit_field};
use fred::prelude::{HashesInterface, LuaInterface, Pool};
use sqlx::MySqlPool;

use super::facts::{CouponEvidence, Evidence, Reconciled, SaleEvidence, Told};
use super::payments::{Settled, read_payments};
use super::sample::Sample;
use super::units::{Endings, Expiry, Holding, SaleCounters, Sampled, Units, peak_live_units};
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
    /// Connects to the Redis and MySQL of `settings` (waiting up to 30 s for a command or a
    /// connection).
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let mut redis = settings.redis.clone();
        redis.command_timeout_ms = 30_000;
        redis.pool_size = 2;
        // The run may leave MySQL busy for a while (a payments backlog): its reads wait.
        let mut mysql = settings.mysql.clone();
        mysql.acquire_timeout_ms = mysql.acquire_timeout_ms.max(30_000);
        Ok(Self {
            redis: redis.connect_pool().await.context("connecting to Redis")?,
            db: mysql.connect().await.context("connecting to MySQL")?,
        })
    }
}

/// The read-only script that reads a sale's counters at one instant.
const SALE_COUNTERS: &str = include_str!("sale_counters.lua");

/// The sale's counters in Redis at one instant (all zero when Redis does not hold the sale).
pub async fn redis_sale_counters(redis: &Pool, keys: &SaleKeys) -> anyhow::Result<SaleCounters> {
    let names = vec![
        keys.sale.clone(),
        keys.stock.clone(),
        keys.outbox.clone(),
        keys.holds.clone(),
    ];
    let values: Vec<i64> = redis
        .eval(SALE_COUNTERS, names, Vec::<String>::new())
        .await
        .context("reading the sale's counters")?;
    Ok(match values[..] {
        [stock, total, held, paid, admitted, outbox, open_orders] => SaleCounters {
            stock,
            total,
            held,
            paid,
            admitted: admitted.max(0) as u64,
            outbox: outbox.max(0) as u64,
            open_orders: open_orders.max(0) as u64,
        },
        _ => SaleCounters::default(),
    })
}

/// Order rows of the sale in MySQL, and of those the ones still `confirmed` (open).
pub async fn mysql_order_count(db: &MySqlPool, sale_id: u64) -> anyhow::Result<(u64, u64)> {
    let (count, open): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(status = 'confirmed'), 0) AS SIGNED) \
         FROM orders WHERE sale_id = ?",
    )
    .bind(sale_id)
    .fetch_one(db)
    .await?;
    Ok((count as u64, open as u64))
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

/// The run's sale, as the evidence needs it: its keys and id, what the sampler saw of its
/// counters during the traffic, and how its open orders expired (when the run waited).
pub struct SaleRun<'a> {
    /// Its keys.
    pub keys: &'a SaleKeys,
    /// Its id.
    pub sale_id: u64,
    /// The counters sampled while the traffic ran.
    pub sampled: Sampled,
    /// How the orders open after the traffic expired; `None` when the run did not wait.
    pub expiry: Option<Expiry>,
    /// How the run paid through the provider; `None` when it did not.
    pub payments: Option<PaymentsRun>,
}

/// How a run paid orders through the provider.
#[derive(Debug, Clone)]
pub struct PaymentsRun {
    /// The payment token.
    pub token: String,
    /// How the wait for the payments to be final ended.
    pub settled: Option<Settled>,
}

/// How long the stock reconciliation keeps looking at a sale still in flight (its default).
const RECONCILE_SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the operators' stock reconciliation on `sale_id` alone, reporting only (no `--fix`),
/// as `flashgate-batch reconcile-stock --sale <id>` would.
pub async fn reconcile_stock(settings: &Settings, sale_id: u64) -> Reconciled {
    let options = flashgate_batch::stock::Options {
        fix: false,
        sales: vec![sale_id],
        settle: RECONCILE_SETTLE,
        pause_before_repair: None,
    };
    match flashgate_batch::stock::run(settings, &options).await {
        Ok(report) => Reconciled {
            exit_code: report.exit_code,
            findings: Sample::of(report.findings.iter().map(|finding| {
                serde_json::to_string(finding).unwrap_or_else(|err| err.to_string())
            })),
        },
        Err(err) => Reconciled {
            exit_code: 1,
            findings: Sample::of([format!("{err:#}")]),
        },
    }
}

/// Reads the evidence of a run whose answers are `all`.
pub async fn gather(
    settings: &Settings,
    backends: &Backends,
    all: &Tally,
    tag: &str,
    sale: Option<SaleRun<'_>>,
    policy: Option<(u64, PolicyCounters)>,
    per_user_limit: u64,
) -> anyhow::Result<Evidence> {
    let named = |granted: &[(u32, String)]| -> Vec<(String, String)> {
        granted
            .iter()
            .map(|(n, id)| (user_id(tag, *n), id.clone()))
            .collect()
    };
    let ids = |orders: &[(u32, String)]| -> HashSet<String> {
        orders.iter().map(|(_, id)| id.clone()).collect()
    };
    let sale = match sale {
        Some(run) => {
            let granted = named(&all.orders);
            let told = Told {
                demand: all.buyers_asked.len() as u64,
                granted: &granted,
            };
            let (mut paid, mut cancelled) = (ids(&all.paid), ids(&all.cancelled));
            // Orders paid through the provider end as their token says (declined: cancelled).
            let through = run.payments.clone();
            if let Some(through) = &through {
                let ended = match crate::options::payment_ends(&through.token) {
                    "paid" => &mut paid,
                    _ => &mut cancelled,
                };
                ended.extend(ids(&all.payments));
            }
            let endings = Endings {
                paid: paid.iter().map(String::as_str).collect(),
                cancelled: cancelled.iter().map(String::as_str).collect(),
                expiry_awaited: run.expiry.is_some(),
            };
            let sale_id = run.sale_id;
            let mut sale = read_sale(&backends.redis, &backends.db, run, told, endings).await?;
            if let Some(through) = through {
                let requested: Vec<String> =
                    all.payments.iter().map(|(_, id)| id.clone()).collect();
                let mut payments =
                    read_payments(&backends.db, sale_id, &through.token, &requested).await?;
                let answered: u64 = all
                    .answers
                    .iter()
                    .filter(|((kind, _), _)| *kind == crate::scenario::Kind::Payment)
                    .map(|(_, n)| n)
                    .sum();
                payments.refused = answered.saturating_sub(payments.requested);
                payments.settled = through.settled;
                sale.payments = Some(payments);
            }
            sale.reconcile_stock = reconcile_stock(settings, sale_id).await;
            Some(sale)
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

/// One order row of a sale: id, status, quantity, admitted at, given back at.
type OrderRow = (
    String,
    String,
    u32,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// Reads the sale's evidence from Redis and MySQL, next to what the shoppers were told and
/// how the run ended their orders.
pub async fn read_sale(
    redis: &Pool,
    db: &MySqlPool,
    run: SaleRun<'_>,
    told: Told<'_>,
    endings: Endings<'_>,
) -> anyhow::Result<SaleEvidence> {
    let SaleRun {
        keys,
        sale_id,
        sampled,
        expiry,
        payments: _,
    } = run;
    let counters = redis_sale_counters(redis, keys).await?;
    let (total, sold, limit): (u32, u32, u32) =
        sqlx::query_as("SELECT total, sold, per_user_limit FROM sales WHERE sale_id = ?")
            .bind(sale_id)
            .fetch_one(db)
            .await
            .context("reading the sale from MySQL")?;
    let limit = u64::from(limit);
    // The rate limits' TATs share the hash; they are not buyers.
    let buyers: HashMap<Vec<u8>, i64> = redis.hgetall(&keys.buyers).await?;
    let buyers: HashMap<String, i64> = buyers
        .into_iter()
        .filter(|(field, _)| !is_rate_limit_field(field))
        .map(|(user, units)| (String::from_utf8_lossy(&user).into_owned(), units))
        .collect();
    let buyer_units = buyers.values().sum();
    let mut redis_over: Vec<String> = buyers
        .into_iter()
        .filter(|(_, units)| *units > limit as i64)
        .map(|(user, units)| format!("{user}: {units}"))
        .collect();
    redis_over.sort();
    let rows: Vec<OrderRow> = sqlx::query_as(
        "SELECT order_id, status, quantity, admitted_at, COALESCE(cancelled_at, expired_at) \
         FROM orders WHERE sale_id = ? ORDER BY order_id",
    )
    .bind(sale_id)
    .fetch_all(db)
    .await
    .context("reading the sale's orders from MySQL")?;
    // Cancelled and expired orders gave their units back: the shopper may buy again.
    let over: Vec<(String, u64)> = sqlx::query_as(
        "SELECT user_id, CAST(SUM(quantity) AS UNSIGNED) FROM orders \
         WHERE sale_id = ? AND status NOT IN ('rejected', 'cancelled', 'expired') \
         GROUP BY user_id HAVING SUM(quantity) > ? ORDER BY user_id",
    )
    .bind(sale_id)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("reading units per user from MySQL")?;
    let ms = |t: &NaiveDateTime| t.and_utc().timestamp_millis();
    let mut units = Units::default();
    let mut holdings = Vec::with_capacity(rows.len());
    for (_, status, quantity, admitted_at, given_back_at) in &rows {
        units.add(status, u64::from(*quantity));
        if status != "rejected" {
            holdings.push(Holding {
                quantity: u64::from(*quantity),
                from_ms: admitted_at.as_ref().map_or(i64::MIN, ms),
                until_ms: given_back_at.as_ref().map(ms),
            });
        }
    }
    let statuses: HashMap<&str, &str> = rows
        .iter()
        .map(|(id, status, ..)| (id.as_str(), status.as_str()))
        .collect();
    let stored: Vec<String> = rows.iter().map(|(id, ..)| id.clone()).collect();
    let (lost, unknown) = told.compare(&stored);
    Ok(SaleEvidence {
        sale_id,
        stock: u64::from(total),
        per_user_limit: limit,
        demand: told.demand,
        answered_admitted: told.granted.len() as u64,
        answered_over_limit: told.over_limit(limit),
        answered_paid: endings.paid.len() as u64,
        answered_cancelled: endings.cancelled.len() as u64,
        redis_admitted: counters.admitted,
        redis_stock: counters.stock,
        redis_total: counters.total,
        redis_held: counters.held,
        redis_paid: counters.paid,
        redis_open_orders: counters.open_orders,
        redis_buyer_units: buyer_units,
        redis_stock_min_seen: sampled.stock_min.min(counters.stock),
        redis_samples: sampled.samples,
        redis_unbalanced_seen: sampled.unbalanced,
        redis_over_limit: Sample::of(redis_over),
        outbox_left: counters.outbox,
        mysql_orders: rows.len() as u64,
        mysql_rejected: rows.iter().filter(|(_, s, ..)| s == "rejected").count() as u64,
        mysql_sold: u64::from(sold),
        mysql_units: units,
        mysql_wrong_status: endings.wrong_status(told.granted, &statuses),
        mysql_peak_live_units: peak_live_units(&holdings),
        expiry,
        payments: None,
        reconcile_stock: Reconciled::default(),
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
