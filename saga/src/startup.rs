//! Starting and stopping the saga as a service: the database pool (migrated when
//! `persister.migrate_on_start` says so, the schema being one), Redis and its scripts, the
//! provider's client, the operational endpoints, the intake and the worker; on shutdown,
//! readiness fails first, the intake finishes and commits its batch, the payments in hand
//! finish their current step and are let go, the producer is flushed, the pools closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use flashgate_config::Settings;
use flashgate_gateway::scripts::Scripts;
use rdkafka::producer::FutureProducer;
use sqlx::MySqlPool;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::announce::{self, Announcing};
use crate::backoff::Backoff;
use crate::handoff::{self, Handed};
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::orders::Orders;
use crate::provider::Provider;
use crate::publish::Publisher;
use crate::store::Store;
use crate::worker::Worker;

/// The least time the saga's producer waits to fill a batch, in milliseconds (`linger.ms`;
/// `kafka.linger_ms` when that is longer). Its sends are outcomes, announced after the
/// order is paid and off the workers' slots, so waiting costs no shopper any time, and each
/// produce request the broker need not take saves it the most CPU of any process per paid
/// order.
const ANNOUNCE_LINGER_MS: u64 = 25;

/// How often the unfinished payments are counted (and the oldest one's age read).
const GAUGES_EVERY: Duration = Duration::from_secs(2);

/// A saga with its clients connected and its listener bound, not yet running.
pub struct Saga {
    db: MySqlPool,
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    intake: Intake,
    worker: Arc<Worker>,
    /// Fresh payments from the intake to the worker.
    handed: mpsc::Receiver<Handed>,
    /// Announces outcomes off the workers' slots.
    announcing: Announcing,
    publisher: Publisher,
    /// How long the payments in hand may take to finish their step at shutdown.
    drain: Duration,
}

impl Saga {
    /// Connects to MySQL (migrating if asked), Redis (loading the scripts) and Kafka, makes the
    /// provider's client and binds `saga.listen` (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = settings
            .mysql
            .connect()
            .await
            .context("connecting to MySQL")?;
        if settings.persister.migrate_on_start {
            flashgate_persister::db::migrate(&db).await?;
        }
        let redis = settings
            .redis
            .connect_pool()
            .await
            .context("connecting to Redis")?;
        let scripts = Scripts::new();
        scripts
            .load_all(&redis)
            .await
            .context("loading Lua scripts")?;
        let metrics = Arc::new(Metrics::default());
        let saga = &settings.saga;
        let provider = Provider::new(&saga.provider_url, saga.provider_timeout(), metrics.clone())?;
        let linger = settings.kafka.linger_ms.max(ANNOUNCE_LINGER_MS);
        let producer: FutureProducer = settings
            .kafka
            .producer_config()
            .set("linger.ms", linger.to_string())
            .create()
            .context("creating the Kafka producer")?;
        let publisher = Publisher::new(producer, &settings.kafka);
        let wake = Arc::new(Notify::new());
        let intake = Intake::new(
            &settings,
            db.clone(),
            publisher.clone(),
            wake.clone(),
            metrics.clone(),
        )?;
        let instance = format!("saga-{}", uuid::Uuid::new_v4().simple());
        let store = Store {
            db: db.clone(),
            lease: Duration::from_millis(saga.lease_ms),
        };
        let backoff = Backoff {
            base_ms: saga.retry_base_ms,
            cap_ms: saga.retry_cap_ms,
        };
        let (handoff, handed) = handoff::channel(saga.concurrency, &instance, store.lease);
        let intake = intake.with_handoff(handoff);
        // Room for every slot's outcome four times over: the workers wait (backpressure) only
        // when the broker has fallen that far behind.
        let (announcer, announcing) = announce::queue(
            saga.concurrency.saturating_mul(4),
            publisher.clone(),
            store.clone(),
            metrics.clone(),
            backoff,
        );
        let worker = Arc::new(Worker {
            store,
            provider,
            orders: Orders {
                redis,
                scripts,
                prefix: settings.redis.key_prefix.clone(),
                settle_ms: settings.gateway.request_timeout_ms.saturating_mul(2),
            },
            announcer,
            metrics: metrics.clone(),
            backoff,
            concurrency: saga.concurrency,
            poll_interval: Duration::from_millis(saga.poll_interval_ms),
            instance: instance.clone(),
            wake,
        });
        let listener = TcpListener::bind(saga.listen)
            .await
            .with_context(|| format!("binding {}", saga.listen))?;
        let local_addr = listener.local_addr()?;
        tracing::info!(%local_addr, instance, provider = saga.provider_url, "saga ready");
        Ok(Self {
            db,
            listener,
            local_addr,
            metrics,
            intake,
            worker,
            handed,
            announcing,
            publisher,
            drain: saga.provider_timeout() * 3 + Duration::from_secs(5),
        })
    }

    /// The bound address of `/healthz`, `/readyz`, `/metrics`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters (what `/metrics` shows).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Consumes and works until `shutdown` resolves, then stops as the module says.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ready = Arc::new(AtomicBool::new(true));
        let shown = self.metrics.clone();
        let ops = tokio::spawn(flashgate_persister::http::serve(
            self.listener,
            move || shown.render(),
            ready.clone(),
        ));
        let (stop, stopped) = watch::channel(false);
        let consuming = tokio::spawn(self.intake.run(stopped.clone()));
        let working = tokio::spawn(self.worker.clone().run(stopped.clone(), Some(self.handed)));
        // Stopped after the worker, so the outcomes of the payments it finishes are announced.
        let (stop_announcing, announcing_stopped) = watch::channel(false);
        let announcing = tokio::spawn(self.announcing.run(announcing_stopped));
        let gauges = tokio::spawn(gauges(self.worker.store.clone(), self.metrics.clone()));
        let recovering = tokio::spawn(recover(self.worker.clone(), stopped.clone()));
        tracing::info!("saga running");
        shutdown.await;
        ready.store(false, Ordering::SeqCst);
        let _ = stop.send(true);
        let consumed = consuming.await.context("intake task")?;
        if tokio::time::timeout(self.drain, working).await.is_err() {
            tracing::warn!(
                "payments in hand did not finish their step in time; their leases run out"
            );
        }
        let _ = stop_announcing.send(true);
        let _ = announcing.await;
        gauges.abort();
        recovering.abort();
        self.publisher.flush(Duration::from_secs(5));
        ops.abort();
        self.db.close().await;
        consumed
    }
}

/// Builds the saga from `settings` and runs it until `shutdown` resolves.
pub async fn run_until(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    Saga::build(settings).await?.run_until(shutdown).await
}

/// When the provider answers again after an outage, makes the payments it put off due at once
/// and wakes the workers: recovery then takes as long as working the backlog, not as long as
/// the longest backoff (`saga.retry_cap_ms`).
async fn recover(worker: Arc<Worker>, mut stop: watch::Receiver<bool>) {
    let health = worker.provider.health();
    loop {
        tokio::select! {
            () = health.back() => {}
            _ = stop.changed() => return,
        }
        Metrics::inc(&worker.metrics.provider_recoveries);
        match worker.store.due_now_after_outage().await {
            Ok(made_due) => {
                Metrics::add(&worker.metrics.retries_pulled_forward, made_due);
                tracing::info!(
                    made_due,
                    "the provider answers again: payments put off are due now"
                );
                worker.wake.notify_one();
            }
            Err(err) => {
                Metrics::inc(&worker.metrics.mysql_errors);
                tracing::warn!(error = %err, "could not make the put-off payments due; they wait out their backoff");
            }
        }
    }
}

/// Keeps the unfinished-payments gauges current (one cheap query every [`GAUGES_EVERY`]).
async fn gauges(store: Store, metrics: Arc<Metrics>) {
    loop {
        match store.unfinished().await {
            Ok((count, oldest_ms)) => {
                metrics.unfinished.store(count, Ordering::Relaxed);
                metrics
                    .oldest_pending_ms
                    .store(oldest_ms, Ordering::Relaxed);
            }
            Err(err) => {
                Metrics::inc(&metrics.mysql_errors);
                tracing::warn!(error = %err, "counting unfinished payments failed");
            }
        }
        tokio::time::sleep(GAUGES_EVERY).await;
    }
}
