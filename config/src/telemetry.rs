//! Logging set-up shared by every binary: `tracing` to stderr, as text or JSON.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.filter`.
pub fn init(log: &LogSettings) {
    init_to(log, std::io::stderr);
}

/// [`init`], writing the lines to `writer` (a test reads the JSON lines a binary would print).
pub fn init_to<W>(log: &LogSettings, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match log.format {
        // The current span's fields sit under `span` in every binary: `span.trace_id` is the
        // request's trace id in the gateway and the order's in the persister.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
