//! The JSON log lines of this test process, as the binaries print them in production: the
//! traces tests read them to see which order and trace id each line names.

use std::io::Write;
use std::sync::{Arc, Mutex};

use flashgate_config::{LogFormat, LogSettings, telemetry};
use serde_json::Value;

/// What this process logged, kept in memory.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs the production JSON format with `filter` as this process's logger, writing
    /// here (once per process: each test of nextest has its own).
    pub fn install(filter: &str) -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        telemetry::init_to(
            &LogSettings {
                format: LogFormat::Json,
                filter: filter.to_owned(),
            },
            move || writer.clone(),
        );
        captured
    }

    /// Every line logged so far, parsed (a line that is not JSON is left out).
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("lines").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Whether a line with this `message` was logged.
    pub fn has(&self, message: &str) -> bool {
        self.lines().iter().any(|l| l["message"] == message)
    }
}
