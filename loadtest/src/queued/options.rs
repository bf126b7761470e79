//! The queued-rush scenario's own options: the waiting room's joining window, its admission
//! rate and how long the run waits for every ticket to be served.

use std::time::Duration;

use clap::Args;
use flashgate_gateway::token::parse_ttl;
use serde::Serialize;

/// Highest admission rate the gateway accepts (`queue::spec::MAX_ADMIT_PER_SECOND`).
const MAX_ADMIT_PER_SECOND: u32 = 100_000;

/// What queued-rush adds to a run (ignored by the other scenarios).
#[derive(Debug, Clone, Args, Serialize)]
pub struct QueueOptions {
    /// queued-rush: shoppers who join the waiting room before the draw (they are the run's
    /// shoppers; --shoppers is ignored).
    #[arg(long, default_value_t = 10_000)]
    pub joiners: u32,
    /// queued-rush: tickets the room admits per second after the draw.
    #[arg(long, default_value_t = 1_000)]
    pub admit_per_second: u32,
    /// queued-rush: how long joining is open before the draw (the sale's `starts_at` is the
    /// room's `opens_at` + this; the room opens --open-in after the sale is created).
    #[arg(long, default_value = "10s", value_parser = parse_ttl)]
    #[serde(serialize_with = "seconds")]
    pub join_window: Duration,
    /// queued-rush: longest wait after the draw for every ticket to be admitted (or dropped
    /// or expired) and its purchase answered.
    #[arg(long, default_value = "120s", value_parser = parse_ttl)]
    #[serde(serialize_with = "seconds")]
    pub admission_timeout: Duration,
}

fn seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

impl QueueOptions {
    /// Problems with the values, one message.
    pub fn validate(&self) -> Result<(), String> {
        if self.joiners == 0 {
            return Err("--joiners must be at least 1".into());
        }
        if !(1..=MAX_ADMIT_PER_SECOND).contains(&self.admit_per_second) {
            return Err(format!(
                "--admit-per-second must be between 1 and {MAX_ADMIT_PER_SECOND}"
            ));
        }
        if self.join_window < Duration::from_secs(1) {
            return Err("--join-window must be at least 1s".into());
        }
        if self.admission_timeout.is_zero() {
            return Err("--admission-timeout must be at least 1s".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{RunOptions, Scenario};

    #[test]
    fn queued_rush_defaults_to_ten_thousand_joiners_and_checks_its_rate() {
        let options = RunOptions::new(Scenario::QueuedRush);
        assert_eq!(options.queue.joiners, 10_000);
        assert_eq!(options.queue.validate(), Ok(()));
        let mut zero = options.queue.clone();
        zero.admit_per_second = 0;
        assert!(zero.validate().unwrap_err().contains("--admit-per-second"));
        let mut short = options.queue.clone();
        short.join_window = Duration::from_millis(500);
        assert!(short.validate().unwrap_err().contains("--join-window"));
    }
}
