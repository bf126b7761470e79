//! One reconciliation run, start to finish: its options, the connections, the checkpoint
//! continued or started, the producer, the workers and the aggregator wired by bounded
//! channels, and the summary at the end.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context;
use flashgate_config::Settings;
use sqlx::MySqlPool;
use tokio::sync::{Mutex, mpsc};

use super::aggregate::Aggregator;
use super::caches::CacheAuditor;
use super::checkpoint::{Checkpoint, CheckpointFile};
use super::ranges::produce;
use super::summary::Summary;
use super::worker::Worker;
use crate::progress::Progress;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repair what is found.
    pub fix: bool,
    /// Ignore (and delete) a checkpoint left by an interrupted run, and start from the first
    /// user. Without it, a checkpoint of the same database and kind of run is continued.
    pub restart: bool,
    /// Pause of each worker after each range, to spare a busy database.
    pub pause: Duration,
    /// Parallel workers, each with its own MySQL connection.
    pub workers: usize,
    /// Balance rows (and about as many ledger rows) per range.
    pub page_size: usize,
    /// A test's fault point: the process aborts (as a kill would stop it) right after this
    /// many repairs, mid-range. `None` in every real run.
    #[doc(hidden)]
    pub abort_after_repairs: Option<u64>,
}

impl Options {
    /// The options the settings give (`batch.workers`, `batch.page_size`): check only, resume.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            fix: false,
            restart: false,
            pause: Duration::ZERO,
            workers: settings.batch.effective_workers(),
            page_size: settings.batch.page_size,
            abort_after_repairs: None,
        }
    }
}

/// The command line of `reconcile-points`; what it leaves out comes from the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// Repair what differs (conditionally, under row locks; safe to repeat).
    #[arg(long)]
    pub fix: bool,
    /// Start from the first user even if an interrupted run left a checkpoint.
    #[arg(long)]
    pub restart: bool,
    /// Pause of each worker after each range, in milliseconds (spares a busy database).
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// Parallel workers (default: batch.workers, 0 = one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Balance rows per range (default: batch.page_size).
    #[arg(long)]
    pub page_size: Option<usize>,
    /// A test's fault point: abort the process right after this many repairs.
    #[arg(long, hide = true)]
    pub abort_after_repairs: Option<u64>,
}

impl ReconcileArgs {
    /// The options of a run: these flags over what the settings give.
    pub fn options(&self, settings: &Settings) -> Options {
        let defaults = Options::from_settings(settings);
        Options {
            fix: self.fix,
            restart: self.restart,
            pause: Duration::from_millis(self.pause_ms),
            workers: self.workers.unwrap_or(defaults.workers),
            page_size: self.page_size.unwrap_or(defaults.page_size),
            abort_after_repairs: self.abort_after_repairs,
        }
    }
}

/// Runs a reconciliation to its end and returns its summary. On failure the checkpoint stays,
/// and the next run continues it.
pub async fn run(settings: &Settings, options: &Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let workers = options.workers.max(1);
    // One connection per worker, one for the producer, one spare for the re-checks' bursts.
    let db = settings
        .mysql
        .connect_sized(settings.mysql.max_connections.max(workers as u32 + 2))
        .await
        .context("connecting to MySQL")?;
    let redis = settings
        .redis
        .connect_pool()
        .await
        .context("connecting to Redis")?;
    let database: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&db)
        .await
        .context("asking for the database name")?;
    let file = CheckpointFile::new(&settings.batch.checkpoint_dir, &database);
    let prefix = &settings.redis.key_prefix;
    if options.restart {
        file.remove()?;
    }
    let loaded = file.load()?;
    let resumed = loaded
        .as_ref()
        .is_some_and(|c| c.matches(options.fix, prefix));
    let state = match loaded {
        Some(checkpoint) if resumed => {
            tracing::info!(
                path = %file.path().display(),
                done_through = checkpoint.done_through,
                "continuing the checkpoint of an interrupted run"
            );
            checkpoint
        }
        Some(_) => {
            tracing::warn!(
                path = %file.path().display(),
                "a checkpoint of another kind of run (fix or key prefix differs); starting over"
            );
            Checkpoint::new(options.fix, prefix)
        }
        None => Checkpoint::new(options.fix, prefix),
    };
    let progress = Progress::new("reconcile-points", estimated_ledger_rows(&db).await);

    // Bounded: the producer runs at most two ranges per worker ahead of them.
    let (work_tx, work_rx) = mpsc::channel(workers * 2);
    let (report_tx, report_rx) = mpsc::channel(workers * 4);
    let producer = tokio::spawn(produce(
        db.clone(),
        state.done_through.clone(),
        options.page_size,
        state.ahead.clone(),
        work_tx,
        report_tx.clone(),
    ));
    let work_rx = Arc::new(Mutex::new(work_rx));
    let worker = Worker {
        db: db.clone(),
        caches: CacheAuditor::new(redis.clone(), prefix),
        fix: options.fix,
        pause: options.pause,
        abort_after: options
            .abort_after_repairs
            .map(|n| Arc::new(AtomicU64::new(n))),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(worker.clone().run(work_rx.clone(), report_tx.clone()));
    }
    // Only the workers hold the receiver and only they and the producer the report sender,
    // so if every worker dies the producer stops, and the aggregator ends with them.
    drop(work_rx);
    drop(report_tx);
    let aggregated = Aggregator::new(state, file.clone(), progress)
        .run(report_rx)
        .await;
    let (totals, finished) = match aggregated {
        Ok(done) => done,
        Err(err) => {
            producer.abort();
            tasks.abort_all();
            return Err(err);
        }
    };
    let ranges = producer.await.context("the producer task")??;
    while let Some(joined) = tasks.join_next().await {
        joined.context("a worker task")?;
    }
    anyhow::ensure!(
        finished == ranges,
        "{finished} of {ranges} ranges finished; the checkpoint keeps the rest"
    );
    file.remove()?;
    db.close().await;
    tracing::info!(ranges, "reconciliation finished");
    Ok(Summary::new(
        options.fix,
        resumed,
        totals,
        started.elapsed(),
    ))
}

/// The ledger's row count as the table statistics estimate it (instant, unlike `COUNT(*)`).
async fn estimated_ledger_rows(db: &MySqlPool) -> u64 {
    sqlx::query_scalar::<_, Option<u64>>(
        "SELECT TABLE_ROWS FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'point_ledger'",
    )
    .fetch_optional(db)
    .await
    .ok()
    .flatten()
    .flatten()
    .unwrap_or(0)
}
