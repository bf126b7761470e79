//! Building the gateway from settings, and running it until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use flashgate_config::Settings;
use rdkafka::producer::FutureProducer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;
use crate::http::auth::Verifier;
use crate::http::server;
use crate::outbox::relay::{Relay, RelayTopics};
use crate::restore::restore;
use crate::sales::restock;

/// A gateway with its listener bound and its clients connected, not yet serving.
pub struct Application {
    app: Arc<App>,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl Application {
    /// Connects to Redis, MySQL and Kafka, loads the scripts, restores open sales that Redis
    /// lacks, and binds the listen address (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let verifier = Verifier::from_settings(&settings.gateway.jwt)?;
        let redis = settings
            .redis
            .connect_pool()
            .await
            .context("connecting to Redis")?;
        let db = settings
            .mysql
            .connect()
            .await
            .context("connecting to MySQL")?;
        let producer: FutureProducer = settings
            .kafka
            .producer_config()
            .create()
            .context("creating the Kafka producer")?;
        let listener = TcpListener::bind(settings.gateway.listen)
            .await
            .with_context(|| format!("binding {}", settings.gateway.listen))?;
        let local_addr = listener.local_addr()?;
        let app = Arc::new(App::new(settings, redis, db, producer, verifier));
        app.scripts
            .load_all(&app.redis)
            .await
            .context("loading Lua scripts")?;
        // Before serving: a token revoked earlier is refused from the first request on.
        if app.revocation.is_on() {
            let entries = crate::revocation::store::reload(
                &app.redis,
                &app.revocation,
                crate::http::auth::unix_now(),
            )
            .await
            .context("loading token revocations")?;
            app.metrics.revocation.reloaded(entries);
        }
        let (restored, restored_policies) = restore(&app).await?;
        tracing::info!(%local_addr, restored, restored_policies, "gateway ready");
        Ok(Self {
            app,
            listener,
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (for tests and tools).
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Serves until `shutdown` resolves; then drains requests, lets the relay make a last
    /// pass and flush the producer, and closes the pools.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let app = self.app;
        let settings = &app.settings;
        let (stop_relay, relay_stopped) = watch::channel(false);
        let relay = Relay {
            redis: app.redis.clone(),
            producer: app.producer.clone(),
            ack_script: app.scripts.outbox_ack.clone(),
            retire_script: app.scripts.outbox_retire.clone(),
            metrics: app.metrics.clone(),
            prefix: settings.redis.key_prefix.clone(),
            topics: RelayTopics {
                orders: settings.kafka.orders_topic.clone(),
                coupons: settings.kafka.coupons_topic.clone(),
                points: settings.kafka.points_topic.clone(),
                payments: settings.kafka.payments_topic.clone(),
                dead_letter: settings.kafka.dead_letter_topic.clone(),
            },
            batch_size: settings.gateway.relay_batch_size,
            claim_idle: std::time::Duration::from_millis(settings.gateway.relay_claim_idle_ms),
            consumer: format!("relay-{}", uuid::Uuid::new_v4().simple()),
            retire_grace: std::time::Duration::from_millis(settings.gateway.relay_retire_grace_ms),
            sweep_interval: std::time::Duration::from_millis(
                settings.gateway.relay_sweep_interval_ms,
            ),
        };
        let relay = tokio::spawn(relay.run(relay_stopped));
        let restock = tokio::spawn(restock::listen(settings.redis.clone(), app.clone()));
        let (stop_sweeper, sweeper_stopped) = watch::channel(false);
        let sweeper = tokio::spawn(crate::lifecycle::sweeper::run(app.clone(), sweeper_stopped));
        // The waiting rooms' admitter: stops with the sweeper (a tick cut short loses nothing).
        let admitter = tokio::spawn(crate::queue::admitter::run(
            app.clone(),
            stop_sweeper.subscribe(),
        ));
        let (stop_revocations, revocations_stopped) = watch::channel(false);
        let revocations = tokio::spawn(crate::revocation::feed::run(
            app.clone(),
            revocations_stopped,
        ));

        let served = server::serve(self.listener, app.clone(), shutdown).await;

        // The sweeper stops first: its last ends go out with the relay's last pass. A pass
        // cut short loses nothing (every step is listed in Redis until done).
        let _ = stop_sweeper.send(true);
        let _ = admitter.await;
        let grace = app.settings.gateway.shutdown_grace();
        if tokio::time::timeout(grace, sweeper).await.is_err() {
            tracing::warn!("lifecycle sweeper did not stop within the grace period");
        }
        let _ = stop_relay.send(true);
        if tokio::time::timeout(grace, relay).await.is_err() {
            tracing::warn!("outbox relay did not stop within the grace period");
        }
        restock.abort();
        let _ = stop_revocations.send(true);
        let _ = revocations.await;
        app.db.close().await;
        served
    }
}
