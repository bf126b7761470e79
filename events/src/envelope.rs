//! The envelope every message on every topic travels in, and the header that repeats its trace
//! id for tools that read headers only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Kafka header that carries the trace id (also inside the envelope).
pub const TRACE_HEADER: &str = "trace_id";

/// Every message on every topic: what it is, which version of its shape, a unique id, when it
/// happened, the trace it belongs to, and the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// Event type, such as `order.admitted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Version of the data's shape for this type.
    pub version: u32,
    /// Unique per event; a re-sent event keeps its id.
    pub event_id: String,
    /// When the event happened (for admissions: Redis's clock).
    pub occurred_at: DateTime<Utc>,
    /// Trace id of the request that caused it.
    pub trace_id: String,
    /// The event itself.
    pub data: T,
}

impl<T> Envelope<T> {
    /// Wraps `data` as version 1 of `kind`; `event_id` must be the same for a re-sent event.
    pub fn v1(
        kind: &str,
        event_id: String,
        occurred_at: DateTime<Utc>,
        trace_id: String,
        data: T,
    ) -> Self {
        Self {
            kind: kind.to_owned(),
            version: 1,
            event_id,
            occurred_at,
            trace_id,
            data,
        }
    }
}
