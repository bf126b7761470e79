//! The envelope every message on every topic travels in, and the header that repeats its trace
//! id for tools that read headers only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Kafka header that carries the trace id (also inside the envelope).
pub const TRACE_HEADER: &str = "trace_id";

/// Kafka header of a message sent back to its source topic from the dead-letter topic
/// (`flashgate-persister dlq replay`); its value names the replay (the letter's
/// `<partition>:<offset>` in the dead-letter topic), so a consumer acts on one replay once.
/// The notifier delivers a replayed event again only where its delivery had ended dead.
pub const REPLAY_HEADER: &str = "dlq_replay";

/// Headers of a dead letter: why it can never succeed, and where it came from (the message
/// itself is the letter's key and payload, as they were).
pub const DEAD_LETTER_HEADERS: [&str; 4] = [
    "reason",
    "source_topic",
    "source_partition",
    "source_offset",
];

/// Header of a dead letter giving its reason as a short, stable code (`unknown_sale`,
/// `undecodable`, ...: the persister's are listed in `flashgate_persister::dlq::reason`), which
/// `dlq list --reason` and the dead-letter metrics go by; `reason` stays the human sentence. A
/// letter without it (written before it existed) is classified from its `reason`.
pub const REASON_CODE_HEADER: &str = "reason_code";

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
