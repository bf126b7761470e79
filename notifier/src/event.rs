//! What the notifier reads from a message: the envelope's type, event id and data (the user it
//! concerns, when it names one), and a dead-letter replay's header.

use flashgate_events::{Envelope, REPLAY_HEADER};
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use serde_json::Value;

/// An event to notify about, as the envelope says.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its type (`order.paid`, ...): which routes it takes.
    pub kind: String,
    /// Unique per event, kept by a re-send: one delivery per (event id, channel, target).
    pub event_id: String,
    /// The envelope as JSON, for the email templates and Slack's text.
    pub envelope: Value,
}

impl Event {
    /// The event in `payload`; `Err` says why it is not one.
    pub fn parse(payload: &[u8]) -> Result<Self, String> {
        let envelope: Envelope<Value> =
            serde_json::from_slice(payload).map_err(|err| format!("undecodable: {err}"))?;
        if envelope.event_id.is_empty() || envelope.event_id.len() > 255 {
            return Err("an event id has 1 to 255 characters".to_owned());
        }
        let kind = envelope.kind.clone();
        let event_id = envelope.event_id.clone();
        let envelope = serde_json::to_value(&envelope).map_err(|err| err.to_string())?;
        Ok(Self {
            kind,
            event_id,
            envelope,
        })
    }

    /// The shopper the event concerns (`data.user_id`), when it names one.
    pub fn user_id(&self) -> Option<&str> {
        self.envelope["data"]["user_id"]
            .as_str()
            .filter(|id| !id.is_empty())
    }
}

/// The value of `message`'s replay header (`flashgate-persister dlq replay`), if it has one.
pub fn replay_of(message: &OwnedMessage) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|header| header.key == REPLAY_HEADER)
        .and_then(|header| header.value)
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_gives_its_type_id_and_user_and_anything_else_is_refused() {
        let json = br#"{"type":"order.paid","version":1,"event_id":"order.paid:1-a","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{"order_id":"1-a","user_id":"u1"}}"#;
        let event = Event::parse(json).unwrap();
        assert_eq!(event.kind, "order.paid");
        assert_eq!(event.event_id, "order.paid:1-a");
        assert_eq!(event.user_id(), Some("u1"));
        assert_eq!(event.envelope["data"]["order_id"], "1-a");
        assert!(
            Event::parse(b"{nope")
                .unwrap_err()
                .starts_with("undecodable")
        );
        let sold_out = br#"{"type":"sale.sold_out","version":1,"event_id":"x","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{"sale_id":4}}"#;
        assert_eq!(Event::parse(sold_out).unwrap().user_id(), None);
    }
}
