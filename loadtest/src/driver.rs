//! Sending a phase's requests over `connections` connections, in open loop (a constant
//! arrival rate, latency from each request's intended send time) or closed loop; to one
//! gateway, or to a gateway and its twin in alternation (one lane each).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::client::{Answer, Connection, Target};
use crate::options::{Mode, PayWith};
use crate::scenario::{Call, Fate, Kind, Plan};
use crate::tally::Tally;

/// Orders kept for status polls; older ones are overwritten.
const POLLABLE_ORDERS: usize = 4_096;

/// What every worker of a run shares.
pub struct Context {
    /// The gateway under test: every connection opens to it (without a twin).
    pub target: Target,
    /// A second gateway over the same Redis and MySQL to compare with the target: the
    /// measured traffic alternates between the two ([`drive`]).
    pub twin: Option<Target>,
    /// Time allowed per request.
    pub timeout: Duration,
    /// `Bearer <token>` of each shopper, by index.
    pub authorizations: Vec<HeaderValue>,
    /// `/v1/sales/{id}/purchases`, when the run has a sale.
    pub purchase_path: Option<String>,
    /// `/v1/coupon-policies/{id}/claims`, when the run has a policy.
    pub claim_path: Option<String>,
    /// Recently admitted orders `(shopper, status path)` for status polls; a bounded ring.
    pub pollable: Mutex<(usize, Vec<(u32, String)>)>,
    /// How admitted orders end, in the lifecycle scenario.
    pub lifecycle: Option<Lifecycle>,
    /// Live counts for the progress line.
    pub counters: Counters,
}

/// What the lifecycle scenario needs to end the orders it admits.
pub struct Lifecycle {
    /// The fates of the admitted orders in turn ([`crate::scenario::fates`]).
    pub fates: Vec<Fate>,
    /// Orders admitted so far: the next one gets `fates[admitted % fates.len()]`.
    pub admitted: AtomicU64,
    /// `Bearer <token>` of the run's manager, who marks orders paid.
    pub manager: HeaderValue,
    /// How the pay share is paid.
    pub pay_with: PayWith,
    /// The body of a payment through the provider, `{"payment_token": ...}`.
    pub payment_body: Bytes,
}

impl Lifecycle {
    /// Ends admitted orders by `fates` in turn, paying `pay_with` (with `payment_token` when
    /// through the provider).
    pub fn new(
        fates: Vec<Fate>,
        manager: HeaderValue,
        pay_with: PayWith,
        payment_token: &str,
    ) -> Self {
        let body = serde_json::json!({ "payment_token": payment_token }).to_string();
        Self {
            fates,
            admitted: AtomicU64::new(0),
            manager,
            pay_with,
            payment_body: Bytes::from(body),
        }
    }
}

/// An order to end right after its admission: the request, its path and its body.
struct Ending {
    call: Call,
    path: String,
    body: Option<Bytes>,
}

/// Live counts the workers bump and the progress line reads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Answers received (any status).
    pub answered: AtomicU64,
    /// 5xx answers and requests that got none.
    pub failed: AtomicU64,
}

impl Counters {
    /// Counts one answer.
    pub fn answered(&self, answer: &Answer) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if answer.is_failure() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How one phase runs.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Open or closed loop.
    pub mode: Mode,
    /// Arrivals per second (open loop).
    pub rate: u32,
    /// Connections, each with at most one request in flight.
    pub connections: u32,
    /// Longest time requests are sent.
    pub duration: Duration,
    /// Answers to requests intended in this first part are not measured.
    pub warmup: Duration,
}

const PURCHASE_BODY: &[u8] = br#"{"quantity":1}"#;

impl Context {
    async fn send(&self, connection: &mut Connection, call: Call) -> (Call, Answer) {
        let authorization = &self.authorizations[call.shopper as usize];
        let body = Some(Bytes::from_static(PURCHASE_BODY));
        match call.kind {
            Kind::Purchase => {
                let answer = match &self.purchase_path {
                    Some(path) => {
                        connection
                            .send(Method::POST, path, authorization, body)
                            .await
                    }
                    None => Answer::Failed("no sale"),
                };
                if let Answer::Http {
                    status: http::StatusCode::ACCEPTED,
                    id: Some(order_id),
                    ..
                } = &answer
                {
                    self.remember(call.shopper, order_id).await;
                }
                (call, answer)
            }
            Kind::Claim => {
                let answer = match &self.claim_path {
                    Some(path) => {
                        connection
                            .send(
                                Method::POST,
                                path,
                                authorization,
                                Some(Bytes::from_static(b"{}")),
                            )
                            .await
                    }
                    None => Answer::Failed("no coupon policy"),
                };
                (call, answer)
            }
            // Ends follow their admission (`Context::ending`); never planned on their own.
            Kind::Pay | Kind::Cancel | Kind::Payment => (call, Answer::Failed("not planned")),
            Kind::Status => {
                let picked = {
                    let ring = self.pollable.lock().await;
                    (!ring.1.is_empty())
                        .then(|| ring.1[call.shopper as usize % ring.1.len()].clone())
                };
                match picked {
                    // Polled by the order's owner, as a shopper's app would.
                    Some((owner, path)) => {
                        let authorization = &self.authorizations[owner as usize];
                        let answer = connection
                            .send(Method::GET, &path, authorization, None)
                            .await;
                        (
                            Call {
                                kind: Kind::Status,
                                shopper: owner,
                            },
                            answer,
                        )
                    }
                    // Nothing admitted yet: the shopper buys instead.
                    None => {
                        let buy = Call {
                            kind: Kind::Purchase,
                            shopper: call.shopper,
                        };
                        Box::pin(self.send(connection, buy)).await
                    }
                }
            }
        }
    }

    /// The request that ends the order `answer` admitted, when the run ends its orders and
    /// this one's fate is not to be abandoned.
    fn ending(&self, call: Call, answer: &Answer) -> Option<Ending> {
        let lifecycle = self.lifecycle.as_ref()?;
        let Answer::Http {
            status: http::StatusCode::ACCEPTED,
            id: Some(order_id),
            ..
        } = answer
        else {
            return None;
        };
        if call.kind != Kind::Purchase || lifecycle.fates.is_empty() {
            return None;
        }
        let n = lifecycle.admitted.fetch_add(1, Ordering::Relaxed);
        let fate = lifecycle.fates[(n % lifecycle.fates.len() as u64) as usize];
        let kind = fate.request(lifecycle.pay_with)?;
        let (path, body) = match kind {
            Kind::Pay => (format!("/v1/admin/orders/{order_id}/mark-paid"), None),
            Kind::Payment => (
                format!("/v1/orders/{order_id}/payment"),
                Some(lifecycle.payment_body.clone()),
            ),
            _ => (format!("/v1/orders/{order_id}/cancel"), None),
        };
        Some(Ending {
            call: Call {
                kind,
                shopper: call.shopper,
            },
            path,
            body,
        })
    }

    /// Sends an ending: a mark-paid by the manager; a cancel or a payment by the order's
    /// owner.
    async fn end(&self, connection: &mut Connection, ending: &Ending) -> Answer {
        let authorization = match (ending.call.kind, &self.lifecycle) {
            (Kind::Pay, Some(lifecycle)) => &lifecycle.manager,
            _ => &self.authorizations[ending.call.shopper as usize],
        };
        connection
            .send(
                Method::POST,
                &ending.path,
                authorization,
                ending.body.clone(),
            )
            .await
    }

    async fn remember(&self, shopper: u32, order_id: &str) {
        let mut ring = self.pollable.lock().await;
        let (next, orders) = &mut *ring;
        let entry = (shopper, format!("/v1/orders/{order_id}"));
        if orders.len() < POLLABLE_ORDERS {
            orders.push(entry);
        } else {
            orders[*next] = entry;
            *next = (*next + 1) % POLLABLE_ORDERS;
        }
    }
}

/// Runs `plan` at `pace` from `start` and returns what it observed, one tally per lane: the
/// target's, then the twin's when there is one.
///
/// With a twin, each lane has half the connections. In open loop arrival `k` goes to lane
/// `k % 2`, so both gateways get the same schedule, interleaved; in closed loop the lanes
/// take the next request from one counter, so the faster gateway serves more.
pub async fn drive(
    context: Arc<Context>,
    plan: Arc<Plan>,
    pace: Pace,
    start: Instant,
) -> Vec<Tally> {
    let targets: Vec<Target> = std::iter::once(context.target.clone())
        .chain(context.twin.clone())
        .collect();
    let lanes = targets.len() as u64;
    let shared = Arc::new(AtomicU64::new(0));
    let connections = (pace.connections / lanes as u32).max(1);
    let workers: Vec<Vec<_>> = targets
        .into_iter()
        .enumerate()
        .map(|(lane, target)| {
            let arrivals = match pace.mode {
                Mode::Open => Arrivals {
                    counter: Arc::new(AtomicU64::new(0)),
                    stride: lanes,
                    offset: lane as u64,
                },
                Mode::Closed => Arrivals {
                    counter: shared.clone(),
                    stride: 1,
                    offset: 0,
                },
            };
            (0..connections)
                .map(|_| {
                    tokio::spawn(worker(
                        context.clone(),
                        target.clone(),
                        plan.clone(),
                        pace.clone(),
                        start,
                        arrivals.clone(),
                    ))
                })
                .collect()
        })
        .collect();
    let mut tallies = Vec::with_capacity(workers.len());
    for lane in workers {
        let mut tally = Tally::default();
        for worker in lane {
            match worker.await {
                Ok(part) => tally.merge(part),
                Err(err) => tracing::error!(error = %err, "a load worker panicked"),
            }
        }
        tallies.push(tally);
    }
    tallies
}

/// The arrivals a lane takes: `counter * stride + offset`, the counter shared by its workers
/// (and, in closed loop, by every lane).
#[derive(Clone)]
struct Arrivals {
    counter: Arc<AtomicU64>,
    stride: u64,
    offset: u64,
}

impl Arrivals {
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) * self.stride + self.offset
    }
}

/// One connection's loop: takes the next arrival, waits for its intended time (open loop),
/// sends it and records the answer. An arrival that finds every connection busy is sent late,
/// and its latency includes the wait: that is the coordinated-omission correction.
async fn worker(
    context: Arc<Context>,
    target: Target,
    plan: Arc<Plan>,
    pace: Pace,
    start: Instant,
    arrivals: Arrivals,
) -> Tally {
    let mut connection = Connection::new(target, context.timeout);
    let mut tally = Tally::default();
    let end = start + pace.duration;
    let measured_from = start + pace.warmup;
    let interval = 1.0 / f64::from(pace.rate.max(1));
    loop {
        let k = arrivals.next();
        let Some(call) = plan.call(k) else { break };
        let intended = match pace.mode {
            Mode::Open => start + Duration::from_secs_f64(k as f64 * interval),
            Mode::Closed => Instant::now(),
        };
        if intended >= end {
            break;
        }
        if pace.mode == Mode::Open {
            tokio::time::sleep_until(intended).await;
        }
        let sent = Instant::now();
        context.counters.sent.fetch_add(1, Ordering::Relaxed);
        let (call, answer) = context.send(&mut connection, call).await;
        let done = Instant::now();
        context.counters.answered(&answer);
        let from = if pace.mode == Mode::Open {
            intended
        } else {
            sent
        };
        let measured = intended >= measured_from;
        tally.record(call, &answer, done - from, measured, done.into_std());
        // The shopper (or the back office) ends the order at once, on the same connection,
        // even past the end of the traffic: an order the plan meant to end must not be left
        // to expire instead. Its latency is measured from its own send.
        if let Some(ending) = context.ending(call, &answer) {
            let sent = Instant::now();
            context.counters.sent.fetch_add(1, Ordering::Relaxed);
            let answer = context.end(&mut connection, &ending).await;
            let done = Instant::now();
            context.counters.answered(&answer);
            tally.record(ending.call, &answer, done - sent, measured, done.into_std());
        }
    }
    tally
}
