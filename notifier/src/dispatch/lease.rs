//! This instance's lease on a delivery's row: the name it leases under, how long a lease
//! lasts, and taking (or renewing) one before each attempt.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use flashgate_config::NotifierSettings;

use super::Dispatcher;
use crate::metrics::Metrics;
use crate::store::{self, Delivery};

impl Dispatcher {
    /// Whether this instance holds `delivery`'s lease now (taken or renewed for
    /// [`Dispatcher::lease`]); `false` when it is final or another instance holds it.
    pub(super) async fn leased(&self, delivery: &Delivery) -> bool {
        match store::lease(&self.db, delivery.id, &self.owner, self.lease).await {
            Ok(leased) => leased,
            Err(err) => {
                Metrics::inc(&self.metrics.mysql_errors);
                tracing::warn!(error = %err, "leasing a delivery failed");
                false
            }
        }
    }
}

/// How long a lease lasts: the slowest endpoint's deadline, plus 30 s for the wait for a
/// sending slot and the writes around the attempt.
pub(super) fn lease_of(settings: &NotifierSettings) -> Duration {
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
pub(super) fn owner_id(listen: SocketAddr) -> String {
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
