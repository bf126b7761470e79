//! `/healthz`, `/readyz` and `/metrics` of the persister, and of every other background
//! service that shows the same three (the payment saga).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Serves the operational endpoints until the task is aborted: `/metrics` answers what
/// `render` gives, followed by the process's own metrics (CPU, memory, file descriptors),
/// `/readyz` 200 while `ready` holds.
pub async fn serve<R>(listener: TcpListener, render: R, ready: Arc<AtomicBool>)
where
    R: Fn() -> String + Clone + Send + Sync + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let render = render.clone();
        let ready = ready.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let (status, body) = match req.uri().path() {
                "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
                "/readyz" if ready.load(Ordering::SeqCst) => (StatusCode::OK, "ready\n".to_owned()),
                "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
                "/metrics" => {
                    let mut text = render();
                    text.push_str(&flashgate_config::process::render());
                    (StatusCode::OK, text)
                }
                _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
            };
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
