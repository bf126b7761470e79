//! Deliveries off the consumer's path: each endpoint holds at most `queue_per_endpoint`
//! deliveries in memory and sends at most `concurrency_per_endpoint` at once, behind its own
//! circuit breaker; a delivery that does not fit waits in MySQL (`pending`) for the sweep,
//! which also resumes what a stopped or killed notifier left. A failed attempt is written
//! down with the time of the next one (capped exponential backoff with jitter); the last one
//! sends the delivery to the dead-letter topic, then marks its row `dead`.
//!
//! One delivery is in hand at most once per process (`in_hand`): the sweep skips the rows
//! being worked on; and at most once across instances on one database: each attempt is made
//! under the row's lease (`owner`, `leased_until`), taken by one conditional UPDATE. A delivery sent while the notifier dies before its row says `sent` is
//! sent again after the restart (the receiver drops it by its event id).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use flashgate_config::{Channel, NotifierSettings, Secret};
use serde_json::Value;
use sqlx::MySqlPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::breaker::{self, Backoff, Breaker};
use crate::channels::email::Mailer;
use crate::channels::http::HttpClient;
use crate::channels::{slack, webhook};
use crate::deadletter::DeadLetters;
use crate::metrics::{EndpointLabel, Metrics};
use crate::store::{self, Delivery};
use crate::templates::Templates;

/// The one endpoint of the email channel (every address goes through the SMTP server).
const SMTP: &str = "smtp";

/// How one endpoint is reached.
enum Way {
    /// A signed webhook.
    Webhook {
        url: String,
        secret: Secret,
        timeout: Duration,
    },
    /// A Slack-compatible incoming webhook.
    Slack { url: Secret, timeout: Duration },
    /// The SMTP server.
    Email,
}

/// One endpoint: its way, breaker and bounds.
struct Endpoint {
    label: EndpointLabel,
    way: Way,
    /// Opens when the endpoint keeps failing; refuses at once while open.
    breaker: Mutex<Breaker>,
    /// Deliveries held in memory (sending or waiting to retry): the endpoint's bounded queue.
    held: Arc<Semaphore>,
    /// Requests in flight to the endpoint.
    sending: Semaphore,
    /// `held`'s size.
    capacity: usize,
}

/// Where the deliveries go, and what they need.
pub struct Dispatcher {
    endpoints: BTreeMap<EndpointLabel, Arc<Endpoint>>,
    /// Row ids in hand in this process (never two workers on one delivery).
    in_hand: Mutex<HashSet<u64>>,
    db: MySqlPool,
    dead_letters: DeadLetters,
    metrics: Arc<Metrics>,
    http: HttpClient,
    mailer: Option<Mailer>,
    templates: Templates,
    max_attempts: u32,
    backoff: Backoff,
    sweep_interval: Duration,
    /// This instance, as the `owner` of the rows it leases (unique per process).
    owner: String,
    /// How long a lease lasts: the slowest endpoint's deadline and a margin, renewed before
    /// each attempt, so a lease never lapses while its attempt may still be under way.
    lease: Duration,
    /// Turns true at shutdown: deliveries waiting for a retry are let go (their rows keep
    /// the time of the next attempt).
    stop: watch::Receiver<bool>,
}

impl Dispatcher {
    /// The endpoints of `settings` (the SMTP one only when a route uses email).
    pub fn new(
        settings: &NotifierSettings,
        db: MySqlPool,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let uses_email = settings
            .channels()
            .values()
            .any(|channels| channels.contains(&Channel::Email));
        let mut ways: Vec<(EndpointLabel, Way)> = Vec::new();
        for (name, hook) in &settings.webhooks {
            let way = Way::Webhook {
                url: hook.url.clone(),
                secret: hook.secret.clone(),
                timeout: Duration::from_millis(hook.timeout_ms),
            };
            ways.push((("webhook".into(), name.clone()), way));
        }
        for (name, slack) in &settings.slack {
            let way = Way::Slack {
                url: slack.url.clone(),
                timeout: Duration::from_millis(slack.timeout_ms),
            };
            ways.push((("slack".into(), name.clone()), way));
        }
        let (mailer, templates) = if uses_email {
            ways.push((("email".into(), SMTP.into()), Way::Email));
            (
                Some(Mailer::new(&settings.email)?),
                Templates::load(&settings.templates_dir)?,
            )
        } else {
            (None, Templates::default())
        };
        let endpoints = ways
            .into_iter()
            .map(|(label, way)| {
                metrics.breaker(&label, 0);
                metrics.in_hand(&label, 0);
                let endpoint = Endpoint {
                    label: label.clone(),
                    way,
                    breaker: Mutex::new(Breaker::new(
                        settings.breaker_failures,
                        Duration::from_millis(settings.breaker_open_ms),
                    )),
                    held: Arc::new(Semaphore::new(settings.queue_per_endpoint)),
                    sending: Semaphore::new(settings.concurrency_per_endpoint),
                    capacity: settings.queue_per_endpoint,
                };
                (label, Arc::new(endpoint))
            })
            .collect();
        Ok(Self {
            endpoints,
            in_hand: Mutex::new(HashSet::new()),
            db,
            dead_letters,
            metrics,
            http: HttpClient::new(),
            mailer,
            templates,
            max_attempts: settings.max_attempts,
            backoff: Backoff {
                base_ms: settings.retry_base_ms,
                cap_ms: settings.retry_cap_ms,
            },
            sweep_interval: settings.sweep_interval(),
            owner: owner_id(settings.listen),
            lease: lease_of(settings),
            stop,
        })
    }

    /// Deliveries in hand now.
    pub fn in_hand(&self) -> usize {
        lock(&self.in_hand).len()
    }

    /// Takes `delivery` in hand if its endpoint has room; otherwise (or when it is in hand
    /// already) it stays in MySQL for the sweep. Never waits.
    pub fn offer(self: &Arc<Self>, delivery: Delivery) {
        let Some(endpoint) = self.endpoints.get(&label_of(&delivery)).cloned() else {
            tracing::warn!(
                channel = delivery.channel,
                target = delivery.target,
                "a delivery for an endpoint no longer configured stays pending"
            );
            return;
        };
        let mut in_hand = lock(&self.in_hand);
        if in_hand.contains(&delivery.id) {
            return;
        }
        let Ok(permit) = endpoint.held.clone().try_acquire_owned() else {
            return;
        };
        in_hand.insert(delivery.id);
        drop(in_hand);
        self.show_held(&endpoint);
        // Its lines carry the order and the event's trace id (`trace.rs`).
        let span = crate::trace::delivery_span(&delivery);
        tokio::spawn(tracing::Instrument::instrument(
            self.clone().work(endpoint, delivery, permit),
            span,
        ));
    }

    /// Finds due deliveries in MySQL every `sweep_interval` until shutdown.
    pub async fn sweep(self: Arc<Self>) {
        let mut stop = self.stop.clone();
        loop {
            for endpoint in self.endpoints.values() {
                let free = endpoint.held.available_permits();
                if free == 0 {
                    continue;
                }
                let (channel, name) = &endpoint.label;
                let target = (channel != "email").then_some(name.as_str());
                // Rows in hand and due are read too (and skipped): ask for a queue's worth.
                match store::due(&self.db, channel, target, endpoint.capacity).await {
                    Ok(due) => due.into_iter().for_each(|delivery| self.offer(delivery)),
                    Err(err) => {
                        Metrics::inc(&self.metrics.mysql_errors);
                        tracing::warn!(error = %err, "looking for due deliveries failed");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.sweep_interval) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One delivery to its end (sent, dead) or until shutdown.
    async fn work(
        self: Arc<Self>,
        endpoint: Arc<Endpoint>,
        mut delivery: Delivery,
        _held: OwnedSemaphorePermit,
    ) {
        let mut stop = self.stop.clone();
        loop {
            // Each attempt under this instance's lease: a row read by the sweep (or
            // recorded by the intake) just before another worker, here or in another
            // instance, sent it — or while it has it in hand — is not sent twice.
            if !self.leased(&delivery).await {
                break;
            }
            let outcome = self.attempt(&endpoint, &delivery).await;
            delivery.attempts += 1;
            let channel = delivery.channel.clone();
            match outcome {
                Ok(()) => {
                    self.write(|| store::sent(&self.db, delivery.id, delivery.attempts))
                        .await;
                    self.metrics.delivery(&channel, "sent");
                    tracing::debug!(
                        event_id = delivery.event_id,
                        channel,
                        attempts = delivery.attempts,
                        "delivery sent"
                    );
                    break;
                }
                Err(reason) if delivery.attempts >= self.max_attempts => {
                    let reason = format!(
                        "{} delivery to {} failed {} times; last: {reason}",
                        delivery.channel, delivery.target, delivery.attempts
                    );
                    if !self.dead_letter(&delivery, &reason).await {
                        break;
                    }
                    self.write(|| store::dead(&self.db, delivery.id, delivery.attempts, &reason))
                        .await;
                    self.metrics.delivery(&channel, "dead");
                    tracing::warn!(
                        event_id = delivery.event_id,
                        channel,
                        target = delivery.target,
                        reason,
                        "delivery dead-lettered"
                    );
                    break;
                }
                Err(reason) => {
                    let delay = self.backoff.delay(delivery.attempts, breaker::random());
                    let next_at = Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                    let attempts = delivery.attempts;
                    self.write(|| {
                        store::failed(
                            &self.db,
                            delivery.id,
                            attempts,
                            &reason,
                            next_at,
                            self.lease,
                        )
                    })
                    .await;
                    self.metrics.delivery(&channel, "retried");
                    tracing::debug!(
                        event_id = delivery.event_id,
                        channel,
                        reason,
                        "attempt failed"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        lock(&self.in_hand).remove(&delivery.id);
        drop(_held);
        self.show_held(&endpoint);
    }

    /// Whether this instance holds `delivery`'s lease now (taken or renewed for
    /// [`Dispatcher::lease`]); `false` when it is final or another instance holds it.
    async fn leased(&self, delivery: &Delivery) -> bool {
        match store::lease(&self.db, delivery.id, &self.owner, self.lease).await {
            Ok(leased) => leased,
            Err(err) => {
                Metrics::inc(&self.metrics.mysql_errors);
                tracing::warn!(error = %err, "leasing a delivery failed");
                false
            }
        }
    }

    /// One attempt: refused at once by an open breaker, else sent within the endpoint's
    /// deadline.
    async fn attempt(&self, endpoint: &Endpoint, delivery: &Delivery) -> Result<(), String> {
        let open = || {
            format!(
                "circuit open: {} {} keeps failing",
                endpoint.label.0, endpoint.label.1
            )
        };
        if lock(&endpoint.breaker).state(Instant::now()) == breaker::State::Open {
            return Err(open());
        }
        let _slot = endpoint.sending.acquire().await.map_err(|_| "closed")?;
        if !lock(&endpoint.breaker).allow(Instant::now()) {
            return Err(open());
        }
        self.show_breaker(endpoint);
        let started = Instant::now();
        let result = self.send(endpoint, delivery).await;
        self.metrics.latency(&delivery.channel, started.elapsed());
        lock(&endpoint.breaker).record(result.is_ok(), Instant::now());
        self.show_breaker(endpoint);
        result
    }

    /// Sends `delivery` the endpoint's way.
    async fn send(&self, endpoint: &Endpoint, delivery: &Delivery) -> Result<(), String> {
        match &endpoint.way {
            Way::Webhook {
                url,
                secret,
                timeout,
            } => {
                let now = Utc::now().timestamp();
                let body = &delivery.payload;
                let headers = [
                    (
                        webhook::SIGNATURE_HEADER,
                        webhook::signature_header(secret.expose().as_bytes(), now, body),
                    ),
                    (webhook::EVENT_ID_HEADER, delivery.event_id.clone()),
                    (webhook::EVENT_TYPE_HEADER, delivery.event_type.clone()),
                ];
                let body = Bytes::copy_from_slice(body);
                self.http.post_json(url, &headers, body, *timeout).await
            }
            Way::Slack { url, timeout } => {
                let envelope = envelope(delivery)?;
                let body = serde_json::to_vec(&slack::message(&envelope))
                    .map_err(|err| err.to_string())?;
                self.http
                    .post_json(url.expose(), &[], Bytes::from(body), *timeout)
                    .await
            }
            Way::Email => {
                let mailer = self.mailer.as_ref().ok_or("no SMTP server configured")?;
                let (subject, body) = self.templates.render(&envelope(delivery)?);
                mailer.send(&delivery.target, &subject, body).await
            }
        }
    }

    /// Sends the letter, retried until the broker takes it; `false` when shutdown came first
    /// (the row stays pending and comes back after the restart).
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> bool {
        let mut stop = self.stop.clone();
        let mut attempt = 0;
        loop {
            match self.dead_letters.send(delivery, reason).await {
                Ok(()) => return true,
                Err(err) => {
                    Metrics::inc(&self.metrics.kafka_errors);
                    tracing::warn!(error = %err, "dead-lettering a delivery failed; retrying");
                }
            }
            attempt += 1;
            tokio::select! {
                () = tokio::time::sleep(self.backoff.delay(attempt, breaker::random())) => {}
                _ = stop.changed() => return false,
            }
        }
    }

    /// Writes a row's change, retried while MySQL is away (at most a minute: then the row
    /// keeps its older state, and the sweep or a restart picks it up again).
    async fn write<'a, F, Fut>(&'a self, change: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = sqlx::Result<()>> + 'a,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0;
        loop {
            let Err(err) = change().await else {
                return;
            };
            Metrics::inc(&self.metrics.mysql_errors);
            tracing::warn!(error = %err, "writing a delivery's outcome failed");
            attempt += 1;
            if Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100u64 << attempt.min(5))).await;
        }
    }

    fn show_breaker(&self, endpoint: &Endpoint) {
        let state = lock(&endpoint.breaker).state(Instant::now());
        self.metrics.breaker(&endpoint.label, state.gauge());
    }

    fn show_held(&self, endpoint: &Endpoint) {
        let held = endpoint.capacity - endpoint.held.available_permits();
        self.metrics.in_hand(&endpoint.label, held as u64);
    }
}

/// The endpoint a delivery goes through.
fn label_of(delivery: &Delivery) -> EndpointLabel {
    match delivery.channel.as_str() {
        "email" => ("email".into(), SMTP.into()),
        channel => (channel.to_owned(), delivery.target.clone()),
    }
}

/// The delivery's event as JSON.
fn envelope(delivery: &Delivery) -> Result<Value, String> {
    serde_json::from_slice(&delivery.payload).map_err(|err| format!("undecodable event: {err}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a lease lasts: the slowest endpoint's deadline, plus 30 s for the wait for a
/// sending slot and the writes around the attempt.
fn lease_of(settings: &NotifierSettings) -> Duration {
    let slowest = settings
        .webhooks
        .values()
        .map(|hook| hook.timeout_ms)
        .chain(settings.slack.values().map(|slack| slack.timeout_ms))
        .chain([settings.email.timeout_ms])
        .max()
        .unwrap_or_default();
    Duration::from_millis(slowest) + Duration::from_secs(30)
}

/// A name for this instance among notifiers on one database: its host and the address it
/// listens on, which no other live instance can hold — so an instance restarted after a crash
/// takes back at once the rows its previous process had leased, instead of waiting for their
/// leases to lapse. Without a fixed port (port 0, as in tests) the process and the moment it
/// started make the name.
fn owner_id(listen: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut id = if listen.port() != 0 {
        format!("{}-{listen}", host.trim())
    } else {
        let started = Utc::now().timestamp_micros();
        format!("{}-{}-{started}", host.trim(), std::process::id())
    };
    id.truncate(64);
    id
}
