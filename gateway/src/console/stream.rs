//! The console's stream of snapshots (`GET /v1/admin/events`), bounded every way: one
//! snapshot a second, at most [`MAX_STREAMS`] open per gateway, at most [`MAX_LIFETIME`] each
//! (the page reconnects), and it ends when the gateway starts draining.
//!
//! The route table answers with one buffered body; a stream cannot be one. So the handler
//! answers the head with a [`Pending`] marker holding the stream's permit, and the server,
//! which owns the shared `Arc<App>` a task needs, turns the marker into a body fed by a task
//! ([`attach`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};

use crate::app::App;
use crate::console::snapshot::{self, Rates};
use crate::http::error::{ApiError, Overload};
use crate::http::response::Response;

/// Most streams open at once in one gateway: each costs a MySQL and a few Redis reads a
/// second, so a forgotten tab or a crowd of managers cannot grow that cost without bound.
pub const MAX_STREAMS: usize = 16;

/// Longest a stream stays open; the page opens a new one (and a revoked or expired token is
/// checked again then).
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Time between snapshots.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The permits of the open streams (one gateway is one process).
static STREAMS: Semaphore = Semaphore::const_new(MAX_STREAMS);

/// The marker a handler puts on a response that is to become a stream: the permit, taken
/// once by [`attach`]. (Extensions must be `Clone`, hence the shared slot.)
#[derive(Clone)]
pub struct Pending(Arc<Mutex<Option<SemaphorePermit<'static>>>>);

/// The head of a stream of snapshots: 200 `text/event-stream`, or 503 `overloaded` when
/// [`MAX_STREAMS`] are open already.
pub fn open() -> Result<Response, ApiError> {
    let permit = STREAMS
        .try_acquire()
        .map_err(|_| ApiError::overloaded(Overload::Busy))?;
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .extensions_mut()
        .insert(Pending(Arc::new(Mutex::new(Some(permit)))));
    Ok(response)
}

/// A body the server sends: one buffer, or the events of a stream.
pub enum ServedBody {
    /// Every ordinary response.
    Full(Full<Bytes>),
    /// A stream's events, as its task sends them; ends when the task does.
    Events(mpsc::Receiver<Bytes>),
}

impl Body for ServedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(full) => Pin::new(full).poll_frame(cx),
            Self::Events(events) => events
                .poll_recv(cx)
                .map(|event| event.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(full) => full.is_end_stream(),
            Self::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(full) => full.size_hint(),
            Self::Events(_) => SizeHint::default(),
        }
    }
}

/// The response as the server sends it: a stream's head gets its body fed by a new task.
pub fn attach(app: &Arc<App>, response: Response) -> http::Response<ServedBody> {
    let permit = response
        .extensions()
        .get::<Pending>()
        .and_then(|pending| pending.0.lock().ok()?.take());
    let (parts, body) = response.into_parts();
    let Some(permit) = permit else {
        return http::Response::from_parts(parts, ServedBody::Full(body));
    };
    // Two events of slack: a reader that stops reading stalls its own task, nothing else.
    let (events, received) = mpsc::channel(2);
    tokio::spawn(feed(app.clone(), events, permit));
    http::Response::from_parts(parts, ServedBody::Events(received))
}

/// Sends a snapshot every [`INTERVAL`] until the reader leaves, the lifetime is over or the
/// gateway drains; the permit is given back when it ends.
async fn feed(app: Arc<App>, events: mpsc::Sender<Bytes>, _permit: SemaphorePermit<'static>) {
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rates = Rates::default();
    // The browser waits this long before reconnecting after the stream ends.
    if events
        .send(Bytes::from_static(b"retry: 2000\n\n"))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = events.closed() => return,
        }
        if app.is_draining() || started.elapsed() >= MAX_LIFETIME {
            let _ = events
                .send(Bytes::from_static(b"event: end\ndata: {}\n\n"))
                .await;
            return;
        }
        let timeout = app.settings.gateway.request_timeout();
        let event = match tokio::time::timeout(timeout, snapshot::take(&app, &mut rates)).await {
            Ok(Ok(snapshot)) => match serde_json::to_string(&snapshot) {
                Ok(json) => format!("event: snapshot\ndata: {json}\n\n"),
                Err(err) => {
                    tracing::error!(error = %err, "console snapshot not encoded");
                    return;
                }
            },
            Ok(Err(err)) => {
                tracing::warn!(error = format!("{err:#}"), "console snapshot failed");
                "event: unavailable\ndata: {}\n\n".to_owned()
            }
            Err(_) => "event: unavailable\ndata: {}\n\n".to_owned(),
        };
        if events.send(Bytes::from(event)).await.is_err() {
            return;
        }
    }
}
