//! Retries of one database or Redis step of a batch job: a deadlock, a lock wait timeout or a
//! failover should not end a nightly run; a lasting failure should, with its cause.

use std::future::Future;
use std::time::Duration;

/// Attempts of one step before the run fails (with backoff in between).
pub const ATTEMPTS: u32 = 5;

/// Runs `step` up to [`ATTEMPTS`] times, backing off from 100 ms (doubling, capped at 2 s).
pub async fn retry<T, F, Fut>(what: &str, mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(err) if attempt < ATTEMPTS => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    attempt,
                    "{what} failed; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
            Err(err) => return Err(err.context(format!("{what} failed {ATTEMPTS} times"))),
        }
    }
}
