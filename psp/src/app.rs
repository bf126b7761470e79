//! What every request handler shares: the provider's book, its settings, its metrics, and
//! whether it is draining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flashgate_config::PspSettings;

use crate::metrics::Metrics;
use crate::provider::Provider;

/// The state of one running server.
#[derive(Debug)]
pub struct App {
    /// The book of charges (shared with whoever started the server).
    pub provider: Provider,
    /// Latency, slowness and failure share.
    pub settings: PspSettings,
    /// The counters of `/metrics`.
    pub metrics: Metrics,
    /// Set when shutdown begins: `/readyz` fails from then on.
    draining: AtomicBool,
}

impl App {
    /// A server's state over `provider`.
    pub fn new(provider: Provider, settings: PspSettings) -> Self {
        Self {
            provider,
            settings,
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
        }
    }

    /// The latency added before every API answer.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.settings.latency_ms)
    }

    /// How long a `tok_slow` charge's answer is held back.
    pub fn slow(&self) -> Duration {
        Duration::from_millis(self.settings.slow_ms)
    }

    /// Whether this request falls in the random failure share (`psp.failure_share`).
    pub fn unlucky(&self) -> bool {
        self.settings.failure_share > 0.0 && random_unit() < self.settings.failure_share
    }

    /// Marks the server as draining.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// A uniform number in [0, 1): 53 of the random bits of a v4 UUID (the workspace's source of
/// randomness; a share of failures needs no better).
fn random_unit() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    // Bytes 9..16 hold no version or variant bits.
    let mut word = [0u8; 8];
    word[1..].copy_from_slice(&bytes[9..16]);
    let bits = u64::from_be_bytes(word) >> 3;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_share_of_zero_never_and_of_one_always_fails() {
        let never = App::new(Provider::new(), PspSettings::default());
        let always = App::new(
            Provider::new(),
            PspSettings {
                failure_share: 1.0,
                ..PspSettings::default()
            },
        );
        assert!((0..1_000).all(|_| !never.unlucky()));
        assert!((0..1_000).all(|_| always.unlucky()));
    }

    #[test]
    fn random_units_fall_in_zero_to_one_and_spread() {
        let draws: Vec<f64> = (0..10_000).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let low = draws.iter().filter(|&&x| x < 0.5).count();
        assert!((4_500..5_500).contains(&low), "{low} of 10000 below 0.5");
    }
}
