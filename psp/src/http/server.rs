//! The HTTP/1.1 server: a connection cap, header-read timeouts, accept backoff, and on
//! shutdown a closed port at once, a drain of the answers in flight, then the rest cut.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use flashgate_config::PspSettings;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::app::App;
use crate::http::router;
use crate::provider::Provider;

/// Most connections open at once; a new one is accepted only when one closes.
const MAX_CONNECTIONS: usize = 4_096;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long answers in flight get after shutdown begins. A `tok_slow` answer due later is cut:
/// its charge stays recorded and its client sees the connection close — the unknown outcome
/// a real provider's crash gives.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Serves the provider's API and its `/healthz`, `/readyz` and `/metrics` on `listener` over
/// `provider`'s book until `shutdown` resolves. Then the listener is closed at once (the port
/// refuses connections: a provider outage; `provider` keeps its charges, and may be served
/// again on the same port), readiness fails, answers in flight get [`DRAIN_GRACE`], and
/// whatever is left is cut before this returns.
pub async fn serve(
    provider: Provider,
    listener: TcpListener,
    settings: PspSettings,
    shutdown: impl Future<Output = ()>,
) {
    let app = Arc::new(App::new(provider, settings));
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Every connection's task, so that none outlives the server (an in-process outage must
    // answer nothing more); finished ones are reaped at each accept.
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_backoff = Duration::from_millis(5);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    accept_backoff = Duration::from_millis(5);
                    stream
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
        let service_app = app.clone();
        let service = service_fn(move |req| {
            let app = service_app.clone();
            async move { Ok::<_, Infallible>(router::handle(&app, req).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    app.start_draining();
    drop(listener);
    tracing::info!("provider stopped accepting; draining answers in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_GRACE) => {
            tracing::warn!(grace = ?DRAIN_GRACE, "grace period over; cutting the remaining connections");
        }
    }
    connections.shutdown().await;
}
