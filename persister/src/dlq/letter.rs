//! The dead-letter format, written by the persister (and by the saga and the notifier in the
//! same shape) and read by `flashgate-persister dlq`.
//!
//! A dead letter is the message that could not be handled, **as it was**: the same key and the
//! same payload bytes (an event envelope, or whatever garbage arrived), on the dead-letter
//! topic (`kafka.dead_letter_topic`), with these headers:
//!
//! | header | value |
//! |---|---|
//! | `reason` | a sentence saying why, with the details (`sale 42 does not exist`) |
//! | `reason_code` | the reason as a stable code ([`Reason`]: `unknown_sale`, ...); older letters lack it |
//! | `source_topic` | the topic the message came from |
//! | `source_partition` | its partition there, in decimal |
//! | `source_offset` | its offset there, in decimal |
//! | `trace_id` | the message's trace id, when it carried one |
//! | `dlq_replay` | when the message was itself a replay: the `<partition>:<offset>` of the letter it replayed |
//!
//! The letter's Kafka timestamp is when it was dead-lettered. Its id, for operators, is its
//! own place in the dead-letter topic: `<partition>:<offset>` ([`LetterId`]). A replay sends
//! key and payload back to `source_topic`, partition `source_partition`, with the header
//! `dlq_replay: <partition>:<offset>` naming the letter.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use flashgate_events::{REASON_CODE_HEADER, REPLAY_HEADER, TRACE_HEADER};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};

use super::reason::Reason;

/// Header names of the letter format (see the module docs).
pub const REASON: &str = "reason";
/// The source topic's header.
pub const SOURCE_TOPIC: &str = "source_topic";
/// The source partition's header.
pub const SOURCE_PARTITION: &str = "source_partition";
/// The source offset's header.
pub const SOURCE_OFFSET: &str = "source_offset";

/// The code shown for a letter whose reason is neither coded nor one of the persister's
/// sentences (another service's letter written before `reason_code` existed).
pub const UNCLASSIFIED: &str = "unclassified";

/// A letter's place in the dead-letter topic: `<partition>:<offset>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LetterId {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
}

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

impl FromStr for LetterId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}` is not a letter id (<partition>:<offset>, e.g. 0:17)");
        let (partition, offset) = text.split_once(':').ok_or_else(bad)?;
        let partition: i32 = partition.parse().map_err(|_| bad())?;
        let offset: i64 = offset.parse().map_err(|_| bad())?;
        if partition < 0 || offset < 0 {
            return Err(bad());
        }
        Ok(Self { partition, offset })
    }
}

/// One dead letter, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// Its place in the dead-letter topic.
    pub id: LetterId,
    /// When it was dead-lettered (the letter's Kafka timestamp), if the broker kept one.
    pub at: Option<DateTime<Utc>>,
    /// The reason's code (`reason_code`, else classified from `reason`, else
    /// [`UNCLASSIFIED`]).
    pub reason_code: String,
    /// The reason's sentence.
    pub reason: String,
    /// Where the message came from; empty when the letter does not say.
    pub source_topic: String,
    /// Its partition there (-1 when the letter does not say).
    pub source_partition: i32,
    /// Its offset there (-1 when the letter does not say).
    pub source_offset: i64,
    /// The message's key.
    pub key: Vec<u8>,
    /// The message's payload.
    pub payload: Vec<u8>,
    /// The message's trace id, when it had one.
    pub trace_id: Option<String>,
    /// The letter this message replayed, when it was a replay.
    pub replay_of: Option<String>,
}

impl Letter {
    /// Reads a message of the dead-letter topic as a letter.
    pub fn from_message<M: Message>(message: &M) -> Self {
        let header = |name: &str| -> Option<String> {
            let headers = message.headers()?;
            headers
                .iter()
                .find(|h| h.key == name)
                .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
        };
        let reason = header(REASON).unwrap_or_default();
        let reason_code = header(REASON_CODE_HEADER)
            .filter(|code| !code.is_empty())
            .or_else(|| Reason::from_sentence(&reason).map(|r| r.code().to_owned()))
            .unwrap_or_else(|| UNCLASSIFIED.to_owned());
        let number = |name: &str| header(name).and_then(|v| v.parse::<i64>().ok());
        Self {
            id: LetterId {
                partition: message.partition(),
                offset: message.offset(),
            },
            at: message
                .timestamp()
                .to_millis()
                .and_then(DateTime::from_timestamp_millis),
            reason_code,
            reason,
            source_topic: header(SOURCE_TOPIC).unwrap_or_default(),
            source_partition: number(SOURCE_PARTITION)
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(-1),
            source_offset: number(SOURCE_OFFSET).unwrap_or(-1),
            key: message.key().unwrap_or_default().to_vec(),
            payload: message.payload().unwrap_or_default().to_vec(),
            trace_id: header(TRACE_HEADER),
            replay_of: header(REPLAY_HEADER),
        }
    }

    /// The key as text (lossy).
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// The first `max` characters of the payload as text on one line (control characters
    /// escaped), with `…` when cut.
    pub fn short_body(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.payload);
        let mut out = String::new();
        for (n, c) in text.chars().enumerate() {
            if n == max {
                out.push('…');
                break;
            }
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// The headers of the letter of `message`, dead-lettered for `reason` (`sentence` says the
/// details). The message's trace id and replay header, when it has them, go along.
pub fn headers<M: Message>(message: &M, reason: Reason, sentence: &str) -> OwnedHeaders {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: REASON,
            value: Some(sentence),
        })
        .insert(Header {
            key: REASON_CODE_HEADER,
            value: Some(reason.code()),
        })
        .insert(Header {
            key: SOURCE_TOPIC,
            value: Some(message.topic()),
        })
        .insert(Header {
            key: SOURCE_PARTITION,
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: SOURCE_OFFSET,
            value: Some(offset.as_str()),
        });
    if let Some(carried) = message.headers() {
        for header in carried.iter() {
            if header.key == TRACE_HEADER || header.key == REPLAY_HEADER {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;

    fn source() -> OwnedMessage {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: TRACE_HEADER,
                value: Some("trace-1"),
            })
            .insert(Header {
                key: "other",
                value: Some("dropped"),
            });
        OwnedMessage::new(
            Some(b"{\"type\":\"order.admitted\"}\n".to_vec()),
            Some(b"42-a".to_vec()),
            "flashgate.orders".to_owned(),
            Timestamp::CreateTime(1),
            1,
            77,
            Some(headers),
        )
    }

    /// What the dead-letter topic gives back for a letter of `headers` at 0:5.
    fn stored(headers: OwnedHeaders, message: &OwnedMessage) -> OwnedMessage {
        OwnedMessage::new(
            message.payload().map(<[u8]>::to_vec),
            message.key().map(<[u8]>::to_vec),
            "flashgate.dead-letter".to_owned(),
            Timestamp::CreateTime(1_764_511_200_000),
            0,
            5,
            Some(headers),
        )
    }

    #[test]
    fn a_letter_reads_back_as_written_with_its_source_trace_and_time() {
        let message = source();
        let written = headers(&message, Reason::UnknownSale, "sale 42 does not exist");
        let letter = Letter::from_message(&stored(written, &message));
        assert_eq!(
            letter.id,
            LetterId {
                partition: 0,
                offset: 5
            }
        );
        assert_eq!(letter.id.to_string(), "0:5");
        assert_eq!(letter.reason_code, "unknown_sale");
        assert_eq!(letter.reason, "sale 42 does not exist");
        assert_eq!(
            (
                letter.source_topic.as_str(),
                letter.source_partition,
                letter.source_offset
            ),
            ("flashgate.orders", 1, 77)
        );
        assert_eq!(letter.key_text(), "42-a");
        assert_eq!(letter.trace_id.as_deref(), Some("trace-1"));
        assert_eq!(letter.replay_of, None);
        assert_eq!(
            letter.at.map(|at| at.to_rfc3339()),
            Some("2025-11-30T14:00:00+00:00".to_owned())
        );
        assert_eq!(letter.short_body(10), "{\"type\":\"o…");
        assert_eq!(letter.short_body(100), "{\"type\":\"order.admitted\"}\\n");
    }

    #[test]
    fn a_replayed_message_dead_lettered_again_names_the_letter_it_replayed() {
        let replayed = OwnedMessage::new(
            Some(b"x".to_vec()),
            None,
            "flashgate.orders".to_owned(),
            Timestamp::NotAvailable,
            0,
            9,
            Some(OwnedHeaders::new().insert(Header {
                key: REPLAY_HEADER,
                value: Some("0:5"),
            })),
        );
        let written = headers(&replayed, Reason::UnknownSale, "sale 42 does not exist");
        let letter = Letter::from_message(&stored(written, &replayed));
        assert_eq!(letter.replay_of.as_deref(), Some("0:5"));
        assert_eq!(letter.trace_id, None);
    }

    #[test]
    fn an_older_letter_without_a_code_is_classified_from_its_sentence() {
        let message = source();
        let old = OwnedHeaders::new()
            .insert(Header {
                key: REASON,
                value: Some("its coupon policy does not exist"),
            })
            .insert(Header {
                key: SOURCE_TOPIC,
                value: Some("flashgate.coupons"),
            });
        let letter = Letter::from_message(&stored(old, &message));
        assert_eq!(letter.reason_code, "unknown_coupon_policy");
        assert_eq!((letter.source_partition, letter.source_offset), (-1, -1));
        let foreign = OwnedHeaders::new().insert(Header {
            key: REASON,
            value: Some("the provider answered 500"),
        });
        assert_eq!(
            Letter::from_message(&stored(foreign, &message)).reason_code,
            UNCLASSIFIED
        );
    }

    #[test]
    fn letter_ids_parse_as_partition_colon_offset_and_nothing_else() {
        assert_eq!(
            "3:1024".parse::<LetterId>(),
            Ok(LetterId {
                partition: 3,
                offset: 1024
            })
        );
        for bad in ["", "3", "3:", ":4", "a:1", "1:b", "-1:4", "1:-4", "1:2:3"] {
            assert!(bad.parse::<LetterId>().is_err(), "{bad}");
        }
    }
}
