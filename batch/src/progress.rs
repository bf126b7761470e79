//! A one-line progress display on stderr, redrawn in place, only when stderr is a terminal
//! (a cron job's log gets the JSON summary and nothing else).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Least time between two redraws.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// The progress line of a run.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    /// What is counted (`rows`, `sales`).
    unit: &'static str,
    /// Estimated total (from table statistics), for the percentage; 0 when unknown.
    total: u64,
    started: Instant,
    last_drawn: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// A progress line for `label` counting rows, shown only when stderr is a terminal.
    pub fn new(label: &'static str, total: u64) -> Self {
        Self {
            label,
            unit: "rows",
            total,
            started: Instant::now(),
            last_drawn: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// The same line counting `unit` instead of rows.
    pub fn counting(self, unit: &'static str) -> Self {
        Self { unit, ..self }
    }

    /// Redraws the line (at most every 200 ms): `done` of `total` units, and `detail`.
    pub fn update(&mut self, done: u64, detail: &str) {
        if !self.enabled || self.last_drawn.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last_drawn = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let percent = if self.total > 0 {
            format!(
                " ({:.0}%)",
                (done as f64 * 100.0 / self.total as f64).min(100.0)
            )
        } else {
            String::new()
        };
        let rate = (done as f64 / secs) as u64;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{}: {done} / ~{} {unit}{percent}, {rate} {unit}/s, {detail}",
            self.label,
            self.total,
            unit = self.unit
        );
        let _ = err.flush();
    }

    /// Ends the line, so what follows starts on a fresh one.
    pub fn finish(&mut self) {
        if self.enabled && self.last_drawn.is_some() {
            eprintln!();
        }
    }
}
