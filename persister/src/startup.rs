//! Starting and stopping the persister as a service: the database pool (migrated when asked
//! to), the operational endpoints, the consumer; on shutdown, readiness fails first, the batch
//! in hand is finished and committed, then the pool is closed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use flashgate_config::Settings;
use sqlx::MySqlPool;
use tokio::sync::watch;

use crate::consumer::Persister;
use crate::metrics::Metrics;
use crate::{db, http};

/// Applies the pending database migrations, then closes its connections.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = connect(settings).await?;
    db::migrate(&pool).await?;
    tracing::info!(
        migrations = db::MIGRATOR.iter().count(),
        "database schema is up to date"
    );
    pool.close().await;
    Ok(())
}

/// Consumes and writes until `shutdown` resolves, serving `/healthz`, `/readyz` and
/// `/metrics` meanwhile.
pub async fn run_until(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let pool = connect(&settings).await?;
    if settings.persister.migrate_on_start {
        db::migrate(&pool).await?;
    }
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(true));
    let listener = tokio::net::TcpListener::bind(settings.persister.listen)
        .await
        .with_context(|| format!("binding {}", settings.persister.listen))?;
    let shown = metrics.clone();
    let ops = tokio::spawn(http::serve(listener, move || shown.render(), ready.clone()));
    let persister = Persister::new(settings, pool.clone(), metrics).await?;
    let (stop, stopped) = watch::channel(false);
    let consuming = tokio::spawn(persister.run(stopped));
    tracing::info!("persister running");
    shutdown.await;
    ready.store(false, Ordering::SeqCst);
    let _ = stop.send(true);
    consuming.await.context("consumer task")??;
    ops.abort();
    pool.close().await;
    Ok(())
}

async fn connect(settings: &Settings) -> anyhow::Result<MySqlPool> {
    settings
        .mysql
        .connect()
        .await
        .context("connecting to MySQL")
}
