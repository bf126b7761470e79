//! One stock reconciliation, start to finish: its options, a first look at every sale page by
//! page, a few more looks at the sales that were in flight or drifting, the repairs, the report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use flashgate_config::Settings;
use sqlx::MySqlPool;

use super::judge::{Judgement, Look, MysqlSale, judge};
use super::mysql;
use super::redis::StockCounters;
use super::repair::repair;
use super::report::{Finding, NotDrained, Outcome, RedisCounters, Report};
use crate::progress::Progress;
use crate::retry::retry;

/// Sales read from MySQL per statement.
const PAGE: usize = 500;
/// Wait before the second look; it doubles up to [`MAX_DELAY`] while the settle time lasts.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between two looks.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// How a run goes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Repair what is found.
    pub fix: bool,
    /// Check only these sales (every sale when empty).
    pub sales: Vec<u64>,
    /// How long sales in flight (outbox not empty, counters moving) are looked at again before
    /// they are reported as not drained.
    pub settle: Duration,
    /// A test's hook: before each repair, the run writes the sale id into this file and waits
    /// until the file is removed, so a test can change a counter between the check and the
    /// repair. `None` in every real run.
    #[doc(hidden)]
    pub pause_before_repair: Option<PathBuf>,
}

/// The command line of `reconcile-stock`.
#[derive(Debug, Clone, clap::Args)]
pub struct StockArgs {
    /// Repair drift: set Redis stock, held and paid to the MySQL values, only where they still
    /// are what the check read and held equals Redis's own open orders (each repair is logged).
    #[arg(long)]
    pub fix: bool,
    /// Check only this sale (repeat for several).
    #[arg(long = "sale", value_name = "ID")]
    pub sales: Vec<u64>,
    /// How long to keep looking at a sale still in flight (its outbox not empty, its counters
    /// moving) before reporting it as not drained, in milliseconds.
    #[arg(long, default_value_t = 5_000, value_name = "MS")]
    pub settle_ms: u64,
    /// Print the summary as JSON instead of text.
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// Print the summary in the Prometheus text format instead of text, for a Pushgateway:
    /// `reconcile-stock --prometheus | curl --data-binary @- $PUSHGATEWAY/metrics/job/flashgate-reconcile-stock`.
    #[arg(long)]
    pub prometheus: bool,
    /// A test's hook: wait at this file before each repair (see `Options`).
    #[arg(long, hide = true, value_name = "PATH")]
    pub pause_before_repair: Option<PathBuf>,
}

impl StockArgs {
    /// The options of a run.
    pub fn options(&self) -> Options {
        let mut sales = self.sales.clone();
        sales.sort_unstable();
        sales.dedup();
        Options {
            fix: self.fix,
            sales,
            settle: Duration::from_millis(self.settle_ms),
            pause_before_repair: self.pause_before_repair.clone(),
        }
    }
}

/// Runs a stock reconciliation to its end and returns its report.
pub async fn run(settings: &Settings, options: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let db = settings
        .mysql
        .connect_sized(2)
        .await
        .context("connecting to MySQL")?;
    let redis = settings
        .redis
        .connect_pool()
        .await
        .context("connecting to Redis")?;
    let counters = StockCounters::new(redis, &settings.redis.key_prefix);
    let mut report = Report::new(options.fix);
    let mut pending = Vec::new();

    if options.sales.is_empty() {
        let total = retry("counting sales", || mysql::count(&db)).await?;
        let mut progress = Progress::new("reconcile-stock", total).counting("sales");
        let mut after = 0;
        loop {
            let page = retry("reading sales", || mysql::sales_after(&db, after, PAGE)).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.sale_id;
            first_look(&counters, page, &mut report, &mut pending, &mut progress).await?;
        }
        progress.finish();
    } else {
        let sales = retry("reading sales", || mysql::sales_by_id(&db, &options.sales)).await?;
        if let Some(missing) = options
            .sales
            .iter()
            .find(|id| !sales.iter().any(|sale| sale.sale_id == **id))
        {
            anyhow::bail!("sale {missing} is not in MySQL");
        }
        let mut progress = Progress::new("reconcile-stock", sales.len() as u64).counting("sales");
        first_look(&counters, sales, &mut report, &mut pending, &mut progress).await?;
        progress.finish();
    }

    for look in settle(&db, &counters, pending, options.settle, &mut report).await? {
        let Judgement::Drift(drift) = &look.judgement else {
            continue;
        };
        let outcome = match (&drift.repair, options.fix) {
            (Err(unfixable), _) => Outcome::Unfixable(*unfixable),
            (Ok(_), false) => Outcome::Reported,
            (Ok(target), true) => {
                repair(
                    &db,
                    &counters,
                    &look,
                    *target,
                    options.pause_before_repair.as_deref(),
                )
                .await?
            }
        };
        report.record(Finding::Drift {
            sale_id: look.mysql.sale_id,
            mysql: look.mysql,
            redis: RedisCounters::from(&look.redis),
            counters: drift.counters.clone(),
            outcome,
        });
    }
    db.close().await;
    Ok(report.finish(started.elapsed()))
}

/// Looks at each sale of a page once: clean and absent ones are counted, the others wait for
/// another look.
async fn first_look(
    counters: &StockCounters,
    sales: Vec<MysqlSale>,
    report: &mut Report,
    pending: &mut Vec<Look>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    for mysql in sales {
        let redis = retry("reading a sale's counters", || counters.read(mysql.sale_id)).await?;
        report.sales_checked += 1;
        match judge(&mysql, &redis) {
            Judgement::NotInRedis => report.not_in_redis += 1,
            Judgement::Clean => report.clean += 1,
            judgement => pending.push(Look {
                mysql,
                redis,
                judgement,
            }),
        }
        progress.update(
            report.sales_checked,
            &format!("{} to look at again", pending.len()),
        );
    }
    Ok(())
}

/// Looks again, a little later each time, at the sales that were in flight or drifting, until
/// each is clean, gone from Redis, or drifting the same at two looks in a row (then returned,
/// confirmed), or the settle time is over (then it is reported as not drained). A drift is
/// never judged from one look: the persister may be committing an order's end right then.
async fn settle(
    db: &MySqlPool,
    counters: &StockCounters,
    mut pending: Vec<Look>,
    settle: Duration,
    report: &mut Report,
) -> anyhow::Result<Vec<Look>> {
    let deadline = Instant::now() + settle;
    let mut delay = FIRST_DELAY;
    let mut confirmed = Vec::new();
    let mut looks = 0;
    // Every pending sale gets a second look, however short the settle time.
    while !pending.is_empty() && (looks == 0 || Instant::now() < deadline) {
        looks += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(delay.min(left.max(FIRST_DELAY))).await;
        delay = (delay * 2).min(MAX_DELAY);
        let ids: Vec<u64> = pending.iter().map(|look| look.mysql.sale_id).collect();
        let sales = retry("reading sales again", || mysql::sales_by_id(db, &ids)).await?;
        let mut still = Vec::new();
        for (previous, mysql) in pending.into_iter().zip(sales) {
            anyhow::ensure!(
                previous.mysql.sale_id == mysql.sale_id,
                "sale {} left MySQL during the run",
                previous.mysql.sale_id
            );
            let redis = retry("reading a sale's counters", || counters.read(mysql.sale_id)).await?;
            let judgement = judge(&mysql, &redis);
            let unchanged = previous.mysql == mysql && previous.redis == redis;
            match judgement {
                Judgement::NotInRedis => report.not_in_redis += 1,
                Judgement::Clean => report.clean += 1,
                Judgement::Drift(_) if unchanged => confirmed.push(previous),
                judgement => still.push(Look {
                    mysql,
                    redis,
                    judgement,
                }),
            }
        }
        pending = still;
    }
    for look in pending {
        let why = match look.judgement {
            Judgement::InFlight { outbox } => NotDrained::Outbox { entries: outbox },
            _ => NotDrained::StillMoving,
        };
        tracing::warn!(sale_id = look.mysql.sale_id, ?why, "sale not drained");
        report.record(Finding::NotDrained {
            sale_id: look.mysql.sale_id,
            why,
        });
    }
    Ok(confirmed)
}
