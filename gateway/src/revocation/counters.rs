//! What `/metrics` shows of revocation: entries loaded, notices heard, tokens refused,
//! subscriber reconnects, and the denylist's size.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The revocation counters of one gateway.
#[derive(Default)]
pub struct RevocationCounters {
    loaded: AtomicU64,
    reloads: AtomicU64,
    notices: AtomicU64,
    refused: AtomicU64,
    reconnects: AtomicU64,
    held: AtomicU64,
}

impl RevocationCounters {
    /// A reload read `entries` revocations from Redis.
    pub fn reloaded(&self, entries: usize) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.loaded.fetch_add(entries as u64, Ordering::Relaxed);
    }

    /// A revocation was heard on the channel.
    pub fn notice(&self) {
        self.notices.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered 401 `token_revoked`.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The subscriber connected again (after the first connection).
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The denylist now holds `entries`.
    pub fn set_held(&self, entries: usize) {
        self.held.store(entries as u64, Ordering::Relaxed);
    }

    /// Appends the Prometheus lines.
    pub fn render(&self, out: &mut String) {
        for (name, kind, value) in [
            (
                "flashgate_revocations_loaded_total",
                "counter",
                &self.loaded,
            ),
            (
                "flashgate_revocation_reloads_total",
                "counter",
                &self.reloads,
            ),
            (
                "flashgate_revocation_notices_total",
                "counter",
                &self.notices,
            ),
            ("flashgate_token_revoked_total", "counter", &self.refused),
            (
                "flashgate_revocation_subscriber_reconnects_total",
                "counter",
                &self.reconnects,
            ),
            ("flashgate_revocations_held", "gauge", &self.held),
        ] {
            let _ = writeln!(
                out,
                "# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
}
