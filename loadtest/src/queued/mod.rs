//! The queued-rush scenario: a sale behind a waiting room in draw mode. Every joiner joins
//! before the start, polls its ticket (every `poll_after_ms`, as told), and buys with its
//! `Queue-Pass` once admitted; a few probes buy without a pass or with someone else's. What
//! each joiner saw, and the draw the gateway published, become [`QueueRun`], judged by
//! [`checks`].

pub mod checks;
pub mod options;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use checks::{Joiner, QueueRun, checks};

use crate::client::{Answer, Connection, decode};
use crate::driver::Context;
use crate::scenario::{Call, Kind};
use crate::tally::Tally;

/// The header a purchase carries its pass in (the gateway's `routes::queue::PASS_HEADER`).
const PASS_HEADER: &str = "queue-pass";

/// Shortest wait between two polls of a ticket, whatever the gateway says.
const MIN_POLL: Duration = Duration::from_millis(50);

/// Wait before trying a join again that was refused for the moment (429, not open yet, no
/// answer).
const JOIN_RETRY: Duration = Duration::from_millis(100);

/// Shoppers who try to buy without a pass right after the start.
const NO_PASS_PROBES: u32 = 5;

/// The room a run set up.
#[derive(Debug, Clone)]
pub struct Room {
    /// The queued sale.
    pub sale_id: u64,
    /// Its `starts_at`: the draw's instant.
    pub starts_at: DateTime<Utc>,
    /// `queue.pass_ttl_seconds` in ms: a ticket was admitted at its pass expiry minus this.
    pub pass_ttl_ms: i64,
    /// Longest wait after the start for every ticket to be served.
    pub admission_timeout: Duration,
    /// Most requests in flight at once.
    pub connections: u32,
    /// Tickets the room admits per second.
    pub admit_per_second: u32,
    /// `Bearer …` of the run's manager (reads the room and its draw).
    pub manager: HeaderValue,
}

/// A ticket as its owner sees it (`POST .../queue`, `GET .../queue/{ticket_id}`).
#[derive(Debug, Deserialize)]
struct TicketView {
    ticket_id: String,
    status: String,
    position: Option<i64>,
    poll_after_ms: u64,
    pass: Option<String>,
    pass_expires_at: Option<DateTime<Utc>>,
}

/// `GET /v1/sales/{id}/queue` (the fields read here).
#[derive(Debug, Deserialize)]
struct RoomView {
    commitment: String,
    drawn: bool,
}

/// `GET /v1/sales/{id}/queue/draw` (the fields read here).
#[derive(Debug, Deserialize)]
pub struct PublishedDraw {
    /// hex of the seed.
    pub seed: String,
    /// hex(SHA-256(seed)).
    pub commitment: String,
    /// When the draw happened.
    pub drawn_at: DateTime<Utc>,
    /// Ticket ids in position order.
    pub tickets: Vec<String>,
}

/// `connections` connections shared by every joiner: one request per connection at a time.
struct Pool {
    permits: Semaphore,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    async fn call(
        &self,
        method: Method,
        path: &str,
        authorization: &HeaderValue,
        extra: Option<(&'static str, HeaderValue)>,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let _permit = self.permits.acquire().await?;
        let mut connection = self
            .idle
            .lock()
            .expect("pool lock")
            .pop()
            .expect("one idle connection per permit");
        let answer = connection
            .call_with(method, path, authorization, extra, body)
            .await;
        self.idle.lock().expect("pool lock").push(connection);
        answer
    }
}

/// What every joiner's task shares.
struct Shared {
    context: Arc<Context>,
    room: Room,
    pool: Pool,
    deadline: Instant,
    tally: Mutex<Tally>,
    /// Answers other than 200/201 to joins and polls, by label.
    odd: Mutex<BTreeMap<String, u64>>,
    /// Whether the stolen-pass probe was sent.
    stolen_probe_sent: AtomicBool,
    /// The probes' answers: (what was tried, its answer's label).
    probes: Mutex<Vec<(String, String)>>,
}

impl Shared {
    fn odd(&self, what: &str, label: String) {
        *self
            .odd
            .lock()
            .expect("lock")
            .entry(format!("{what}: {label}"))
            .or_default() += 1;
    }
}

fn purchase_body() -> Option<Bytes> {
    Some(Bytes::from_static(br#"{"quantity":1}"#))
}

fn answer_of(result: &anyhow::Result<(StatusCode, Bytes)>) -> Answer {
    match result {
        Ok((status, bytes)) => decode(*status, bytes),
        Err(err) if format!("{err:#}").contains("timeout") => Answer::Failed("timeout"),
        Err(_) => Answer::Failed("transport"),
    }
}

/// Runs the scenario from the room's opening: every shopper of `context` joins, polls and
/// buys. Returns the purchases (as the other scenarios count them) and what the room did.
pub async fn drive(context: Arc<Context>, room: Room) -> anyhow::Result<(Tally, QueueRun)> {
    let purchase_path = context
        .purchase_path
        .clone()
        .ok_or_else(|| anyhow::anyhow!("queued-rush needs a sale"))?;
    let connections = (0..room.connections.max(1))
        .map(|_| Connection::new(context.target.clone(), context.timeout))
        .collect();
    let until_start = (room.starts_at - Utc::now()).to_std().unwrap_or_default();
    let shared = Arc::new(Shared {
        deadline: Instant::now() + until_start + room.admission_timeout,
        pool: Pool {
            permits: Semaphore::new(room.connections.max(1) as usize),
            idle: Mutex::new(connections),
        },
        context,
        room,
        tally: Mutex::new(Tally::default()),
        odd: Mutex::new(BTreeMap::new()),
        stolen_probe_sent: AtomicBool::new(false),
        probes: Mutex::new(Vec::new()),
    });
    let sale_id = shared.room.sale_id;
    let room_path = format!("/v1/sales/{sale_id}/queue");
    let manager = shared.room.manager.clone();
    let (status, bytes) = shared
        .pool
        .call(Method::GET, &room_path, &manager, None, None)
        .await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET {room_path} answered {status}"
    );
    let before: RoomView = serde_json::from_slice(&bytes)?;
    anyhow::ensure!(!before.drawn, "sale {sale_id}: drawn before anyone joined");

    let joined_from = Instant::now();
    let shoppers = shared.context.authorizations.len() as u32;
    let tasks: Vec<_> = (0..shoppers)
        .map(|n| tokio::spawn(joiner(shared.clone(), n, purchase_path.clone())))
        .collect();
    // Right after the start nobody holds a pass yet: purchases without one are refused.
    tokio::time::sleep(until_start + Duration::from_millis(200)).await;
    for n in 0..NO_PASS_PROBES.min(shoppers) {
        let authorization = &shared.context.authorizations[n as usize];
        let sent = shared
            .pool
            .call(
                Method::POST,
                &purchase_path,
                authorization,
                None,
                purchase_body(),
            )
            .await;
        let label = answer_of(&sent).label();
        let mut probes = shared.probes.lock().expect("lock");
        probes.push(("a purchase without a pass".into(), label));
    }
    let mut joiners = Vec::with_capacity(shoppers as usize);
    for task in tasks {
        joiners.push(task.await?);
    }
    let ended = Instant::now();

    let draw_path = format!("/v1/sales/{sale_id}/queue/draw");
    let (status, bytes) = shared
        .pool
        .call(Method::GET, &draw_path, &manager, None, None)
        .await?;
    let published: Option<PublishedDraw> = match status {
        StatusCode::OK => Some(serde_json::from_slice(&bytes)?),
        _ => None,
    };
    let tally = std::mem::take(&mut *shared.tally.lock().expect("lock"));
    let run = QueueRun::new(
        &shared.room,
        before.commitment,
        published,
        joiners,
        std::mem::take(&mut *shared.odd.lock().expect("lock")),
        std::mem::take(&mut *shared.probes.lock().expect("lock")),
        (ended - joined_from).as_secs_f64(),
    );
    Ok((tally, run))
}

/// One shopper: joins (retrying what is refused for the moment), polls as told until
/// admitted, dropped, expired or out of time, then buys with the pass.
async fn joiner(shared: Arc<Shared>, n: u32, purchase_path: String) -> Joiner {
    let sale_id = shared.room.sale_id;
    let authorization = shared.context.authorizations[n as usize].clone();
    let mut seen = Joiner::default();
    let join_path = format!("/v1/sales/{sale_id}/queue");
    let mut view = loop {
        if Instant::now() >= shared.deadline {
            seen.status = "not joined".into();
            return seen;
        }
        let sent = shared
            .pool
            .call(Method::POST, &join_path, &authorization, None, None)
            .await;
        match sent {
            Ok((StatusCode::CREATED | StatusCode::OK, bytes)) => {
                match serde_json::from_slice::<TicketView>(&bytes) {
                    Ok(view) => break view,
                    Err(_) => shared.odd("join", "undecodable".into()),
                }
            }
            other => shared.odd("join", answer_of(&other).label()),
        }
        tokio::time::sleep(JOIN_RETRY).await;
    };
    seen.joined_at = Some(Utc::now());
    seen.ticket = Some(view.ticket_id.clone());
    let ticket_path = format!("{join_path}/{}", view.ticket_id);
    let pass = loop {
        seen.position = view.position.or(seen.position);
        seen.status.clone_from(&view.status);
        match (view.status.as_str(), &view.pass) {
            ("admitted", Some(pass)) => break pass.clone(),
            ("waiting", _) | ("admitted", None) => {}
            _ => return seen,
        }
        let wait = Duration::from_millis(view.poll_after_ms).max(MIN_POLL);
        if Instant::now() + wait >= shared.deadline {
            seen.status = "still waiting".into();
            return seen;
        }
        tokio::time::sleep(wait).await;
        seen.polls += 1;
        let polled = shared
            .pool
            .call(Method::GET, &ticket_path, &authorization, None, None)
            .await;
        match polled {
            Ok((StatusCode::OK, bytes)) => match serde_json::from_slice::<TicketView>(&bytes) {
                Ok(next) => view = next,
                Err(_) => shared.odd("poll", "undecodable".into()),
            },
            other => shared.odd("poll", answer_of(&other).label()),
        }
    };
    seen.admitted_at_ms = view
        .pass_expires_at
        .map(|at| at.timestamp_millis() - shared.room.pass_ttl_ms);
    let Ok(pass_value) = HeaderValue::from_str(&pass) else {
        seen.status = "pass not a header value".into();
        return seen;
    };
    // The first pass seen is tried once by the next shopper: a pass is its owner's alone.
    let shoppers = shared.context.authorizations.len();
    if shoppers > 1 && !shared.stolen_probe_sent.swap(true, Ordering::Relaxed) {
        let thief = &shared.context.authorizations[(n as usize + 1) % shoppers];
        let sent = shared
            .pool
            .call(
                Method::POST,
                &purchase_path,
                thief,
                Some((PASS_HEADER, pass_value.clone())),
                purchase_body(),
            )
            .await;
        let label = answer_of(&sent).label();
        let mut probes = shared.probes.lock().expect("lock");
        probes.push(("a purchase with another shopper's pass".into(), label));
    }
    let sent_at = Instant::now();
    shared.context.counters.sent.fetch_add(1, Ordering::Relaxed);
    let bought = shared
        .pool
        .call(
            Method::POST,
            &purchase_path,
            &authorization,
            Some((PASS_HEADER, pass_value)),
            purchase_body(),
        )
        .await;
    let done = Instant::now();
    let answer = answer_of(&bought);
    shared.context.counters.answered(&answer);
    seen.purchase = Some(answer.label());
    let call = Call {
        kind: Kind::Purchase,
        shopper: n,
    };
    shared
        .tally
        .lock()
        .expect("lock")
        .record(call, &answer, done - sent_at, true, done.into_std());
    seen
}
