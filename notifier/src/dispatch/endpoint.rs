//! The endpoint table: each endpoint's way, circuit breaker and bounds (the deliveries it
//! holds, the requests it has in flight), the gauges that show them, and one attempt made
//! through them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flashgate_config::NotifierSettings;
use tokio::sync::Semaphore;

use super::send::{Envelope, Sender, Way};
use crate::breaker::{self, Breaker};
use crate::metrics::{EndpointLabel, Metrics};
use crate::store::Delivery;

/// The one endpoint of the email channel (every address goes through the SMTP server).
const SMTP: &str = "smtp";

/// One endpoint: its way, breaker and bounds.
pub(super) struct Endpoint {
    pub(super) label: EndpointLabel,
    way: Way,
    /// Opens when the endpoint keeps failing; refuses at once while open.
    breaker: Mutex<Breaker>,
    /// Deliveries held in memory (sending or waiting to retry): the endpoint's bounded queue.
    pub(super) held: Arc<Semaphore>,
    /// Requests in flight to the endpoint.
    sending: Semaphore,
    /// `held`'s size.
    pub(super) capacity: usize,
}

/// The endpoints of `settings`, by label (the SMTP one only when `uses_email`), their gauges
/// shown closed and empty.
pub(super) fn table(
    settings: &NotifierSettings,
    uses_email: bool,
    metrics: &Metrics,
) -> BTreeMap<EndpointLabel, Arc<Endpoint>> {
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
    if uses_email {
        ways.push((("email".into(), SMTP.into()), Way::Email));
    }
    ways.into_iter()
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
        .collect()
}

/// The endpoint a delivery goes through.
pub(super) fn label_of(delivery: &Delivery) -> EndpointLabel {
    match delivery.channel.as_str() {
        "email" => ("email".into(), SMTP.into()),
        channel => (channel.to_owned(), delivery.target.clone()),
    }
}

impl Endpoint {
    /// One attempt: refused at once by an open breaker, else sent within the endpoint's
    /// deadline.
    pub(super) async fn attempt(
        &self,
        sender: &Sender,
        delivery: &Delivery,
        envelope: &mut Envelope,
        metrics: &Metrics,
    ) -> Result<(), String> {
        let open = || {
            format!(
                "circuit open: {} {} keeps failing",
                self.label.0, self.label.1
            )
        };
        if lock(&self.breaker).state(Instant::now()) == breaker::State::Open {
            return Err(open());
        }
        let _slot = self.sending.acquire().await.map_err(|_| "closed")?;
        if !lock(&self.breaker).allow(Instant::now()) {
            return Err(open());
        }
        self.show_breaker(metrics);
        let started = Instant::now();
        let result = sender.send(&self.way, delivery, envelope).await;
        metrics.latency(&delivery.channel, started.elapsed());
        lock(&self.breaker).record(result.is_ok(), Instant::now());
        self.show_breaker(metrics);
        result
    }

    /// Shows the breaker's state on its gauge.
    fn show_breaker(&self, metrics: &Metrics) {
        let state = lock(&self.breaker).state(Instant::now());
        metrics.breaker(&self.label, state.gauge());
    }

    /// Shows how many deliveries the endpoint holds on its gauge.
    pub(super) fn show_held(&self, metrics: &Metrics) {
        let held = self.capacity - self.held.available_permits();
        metrics.in_hand(&self.label, held as u64);
    }
}

/// Locks `mutex` even when a panicking holder poisoned it: the breaker and the set of rows
/// in hand stay consistent between calls, and one panicked worker must not stop the others.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
