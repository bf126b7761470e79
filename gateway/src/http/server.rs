//! The HTTP/1.1 server: a connection cap, header-read timeouts, accept backoff, and a
//! graceful drain on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::http::router;
use crate::limits::address::Peer;

/// Serves `listener` until `shutdown` resolves, then stops accepting, fails readiness, and
/// gives in-flight requests the configured grace period.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    // Caps open connections; a new one is accepted only when a permit is free.
    let permits = Arc::new(Semaphore::new(app.settings.gateway.max_connections));
    let header_timeout = app.settings.gateway.header_read_timeout();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_backoff = Duration::from_millis(5);
                    (stream, peer)
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(accept_backoff).await;
                    accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            // The peer, for the per-address rate limits (`limits::address`).
            req.extensions_mut().insert(Peer(peer));
            let app = app.clone();
            async move {
                let response = router::handle(&app, req).await;
                // The console's stream answers with a head whose body a task feeds.
                Ok::<_, Infallible>(crate::console::stream::attach(&app, response))
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    app.start_draining();
    drop(listener);
    tracing::info!("draining in-flight requests");
    let grace = app.settings.gateway.shutdown_grace();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
    Ok(())
}
