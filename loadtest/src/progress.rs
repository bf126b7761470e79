//! The progress line on a terminal: elapsed time, requests sent and answered, the rate and
//! the failures so far, rewritten in place once a second.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::driver::Context;

/// Prints the progress line every second to stderr while it is a terminal (and `enabled`),
/// until the returned handle is aborted.
pub fn spawn(
    label: &'static str,
    context: Arc<Context>,
    start: Instant,
    duration: Duration,
    enabled: bool,
) -> Option<tokio::task::JoinHandle<()>> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last = 0;
        loop {
            tick.tick().await;
            let counters = &context.counters;
            let answered = counters.answered.load(Ordering::Relaxed);
            let line = format!(
                "\r{label}: {:>5.1}s / {:.0}s  sent {}  answered {}  {}/s  failures {}   ",
                start.elapsed().as_secs_f64(),
                duration.as_secs_f64(),
                counters.sent.load(Ordering::Relaxed),
                answered,
                answered - last,
                counters.failed.load(Ordering::Relaxed),
            );
            last = answered;
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(line.as_bytes());
            let _ = stderr.flush();
        }
    }))
}

/// Ends the progress line (a newline after the last rewrite).
pub fn finish(handle: Option<tokio::task::JoinHandle<()>>) {
    if let Some(handle) = handle {
        handle.abort();
        eprintln!();
    }
}
