//! Starting the provider as a service: bind its address, say that its charges live in memory
//! only, serve until the shutdown signal.

use std::future::Future;

use anyhow::Context;
use flashgate_config::PspSettings;
use tokio::net::TcpListener;

use crate::http::server::serve;
use crate::provider::Provider;

/// Serves a new, empty provider on `settings.listen` until `shutdown` resolves.
pub async fn run_until(
    settings: PspSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(
        listen = %listener.local_addr().context("local address")?,
        latency_ms = settings.latency_ms,
        slow_ms = settings.slow_ms,
        failure_share = settings.failure_share,
        "virtual payment provider running; its charges live in memory only and are lost when it stops"
    );
    serve(Provider::new(), listener, settings, shutdown).await;
    Ok(())
}
