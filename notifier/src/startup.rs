//! Starting and stopping the notifier as a service: the database pool (migrated when
//! `persister.migrate_on_start` says so), the dead-letter producer, the endpoints, the
//! operational endpoints, the sweep and the consumer. On shutdown readiness fails first, the
//! consumer finishes and commits its batch, deliveries waiting for a retry are let go (their
//! rows say when the next attempt is due), those being sent get a grace to finish, the
//! producer is flushed and the pool closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use flashgate_config::Settings;
use rdkafka::producer::FutureProducer;
use sqlx::MySqlPool;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::deadletter::DeadLetters;
use crate::dispatch::Dispatcher;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::store;

/// How often the backlog in MySQL is counted.
const GAUGES_EVERY: Duration = Duration::from_secs(2);

/// How long deliveries being sent at shutdown may take to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// A notifier with its clients connected and its listener bound, not yet running.
pub struct Notifier {
    db: MySqlPool,
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    intake: Intake,
    dispatcher: Arc<Dispatcher>,
    dead_letters: DeadLetters,
    /// Tells the dispatcher's deliveries and sweep to stop.
    stop: watch::Sender<bool>,
}

impl Notifier {
    /// Connects to MySQL (migrating if asked) and Kafka, loads the templates, makes the
    /// endpoints and binds `notifier.listen` (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = settings
            .mysql
            .connect()
            .await
            .context("connecting to MySQL")?;
        if settings.persister.migrate_on_start {
            flashgate_persister::db::migrate(&db).await?;
        }
        let metrics = Arc::new(Metrics::default());
        let producer: FutureProducer = settings
            .kafka
            .producer_config()
            .create()
            .context("creating the Kafka producer")?;
        let dead_letters = DeadLetters::new(producer, &settings.kafka);
        let (stop, stopped) = watch::channel(false);
        let dispatcher = Arc::new(Dispatcher::new(
            &settings.notifier,
            db.clone(),
            dead_letters.clone(),
            metrics.clone(),
            stopped,
        )?);
        let intake = Intake::new(&settings, db.clone(), dispatcher.clone(), metrics.clone())?;
        let listen = settings.notifier.listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let local_addr = listener.local_addr()?;
        tracing::info!(
            %local_addr,
            routes = settings.notifier.routes.len(),
            "notifier ready"
        );
        Ok(Self {
            db,
            listener,
            local_addr,
            metrics,
            intake,
            dispatcher,
            dead_letters,
            stop,
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

    /// Consumes and delivers until `shutdown` resolves, then stops as the module says.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ready = Arc::new(AtomicBool::new(true));
        let shown = self.metrics.clone();
        let ops = tokio::spawn(flashgate_persister::http::serve(
            self.listener,
            move || shown.render(),
            ready.clone(),
        ));
        let (stop_intake, intake_stopped) = watch::channel(false);
        let consuming = tokio::spawn(self.intake.run(intake_stopped));
        let sweeping = tokio::spawn(self.dispatcher.clone().sweep());
        let gauges = tokio::spawn(gauges(self.db.clone(), self.metrics.clone()));
        tracing::info!("notifier running");
        shutdown.await;
        ready.store(false, Ordering::SeqCst);
        let _ = stop_intake.send(true);
        let consumed = consuming.await.context("intake task")?;
        let _ = self.stop.send(true);
        let _ = sweeping.await;
        let deadline = tokio::time::Instant::now() + DRAIN;
        while self.dispatcher.in_hand() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.dispatcher.in_hand() > 0 {
            tracing::warn!(
                in_hand = self.dispatcher.in_hand(),
                "deliveries still being sent at shutdown; they are resumed after the restart"
            );
        }
        gauges.abort();
        self.dead_letters.flush(Duration::from_secs(5));
        ops.abort();
        self.db.close().await;
        consumed
    }
}

/// Builds the notifier from `settings` and runs it until `shutdown` resolves.
pub async fn run_until(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    Notifier::build(settings).await?.run_until(shutdown).await
}

/// Keeps the backlog gauges current (one cheap query every [`GAUGES_EVERY`]).
async fn gauges(db: MySqlPool, metrics: Arc<Metrics>) {
    loop {
        match store::backlog(&db).await {
            Ok((count, oldest)) => {
                metrics.pending.store(count, Ordering::Relaxed);
                metrics.oldest_pending_secs.store(oldest, Ordering::Relaxed);
            }
            Err(err) => {
                Metrics::inc(&metrics.mysql_errors);
                tracing::warn!(error = %err, "counting pending deliveries failed");
            }
        }
        tokio::time::sleep(GAUGES_EVERY).await;
    }
}
