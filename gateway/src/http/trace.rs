//! A request's trace id: from a valid W3C `traceparent` (Trace Context, version 00), else
//! from `X-Request-Id`, else a fresh one; and the `traceparent` the answer carries back.
//!
//! A `traceparent` wins over `X-Request-Id`: it is the standard a tracing system upstream
//! correlates by, so its trace id is the one worth finding in our logs and rows. An invalid
//! `traceparent` is ignored (the spec: start a new trace), never a 4xx.

use http::{HeaderMap, HeaderValue};

/// Longest `X-Request-Id` taken as the trace id; a longer one is replaced by a fresh id.
const TRACE_ID_MAX_LEN: usize = 64;

/// The request's trace: its id, and the trace flags it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Carried into the outbox entry, the Kafka header, the persister's logs, the order's row.
    pub id: String,
    /// The incoming `traceparent`'s flags (`sampled`, ...), passed on unchanged; 00 otherwise.
    flags: u8,
}

impl Trace {
    /// The trace of a request with `headers`.
    pub fn of(headers: &HeaderMap) -> Self {
        if let Some((id, flags)) = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent)
        {
            return Self { id, flags };
        }
        let id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= TRACE_ID_MAX_LEN
                    && v.bytes().all(|b| b.is_ascii_graphic())
            })
            .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
        Self { id, flags: 0 }
    }

    /// The answer's `traceparent`: this trace id, a new span id (the gateway's own part of the
    /// trace). None when the id came from an `X-Request-Id` that is no W3C trace id.
    pub fn traceparent(&self) -> Option<HeaderValue> {
        if !is_trace_id(&self.id) {
            return None;
        }
        let span = new_span_id();
        HeaderValue::from_str(&format!("00-{}-{span:016x}-{:02x}", self.id, self.flags)).ok()
    }
}

/// A span id: 8 random bytes, never all zeros (invalid by the spec).
fn new_span_id() -> u64 {
    loop {
        let (span, _) = uuid::Uuid::new_v4().as_u64_pair();
        if span != 0 {
            return span;
        }
    }
}

/// The trace id and flags of a `traceparent` value, or None when the spec says to ignore it:
/// version `ff`, a field of the wrong length or not lowercase hex, an all-zero trace or parent
/// id. A version above 00 is read by the 00 layout, and may carry more after a `-`.
pub fn parse_traceparent(value: &str) -> Option<(String, u8)> {
    let value = value.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    if bytes.len() < 55 {
        return None;
    }
    let version = &value[..2];
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    if version == "00" && bytes.len() != 55 {
        return None;
    }
    if bytes.len() > 55 && bytes[55] != b'-' {
        return None;
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    if !is_trace_id(trace) || !is_lower_hex(parent) || is_zero(parent) || !is_lower_hex(flags) {
        return None;
    }
    Some((trace.to_owned(), u8::from_str_radix(flags, 16).ok()?))
}

/// 32 lowercase hex digits, not all zeros.
fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && is_lower_hex(id) && !is_zero(id)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_valid_traceparent_gives_its_trace_id_and_flags() {
        assert_eq!(parse_traceparent(VALID), Some((TRACE.to_owned(), 1)));
    }

    #[test]
    fn surrounding_spaces_and_tabs_are_ignored() {
        assert_eq!(
            parse_traceparent(&format!(" \t{VALID} ")),
            Some((TRACE.to_owned(), 1))
        );
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_the_00_layout_and_may_carry_more() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert_eq!(parse_traceparent(later), Some((TRACE.to_owned(), 1)));
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(parse_traceparent(glued), None);
    }

    #[test]
    fn a_valid_traceparent_wins_over_x_request_id() {
        let trace = Trace::of(&headers(&[("traceparent", VALID), ("x-request-id", "r1")]));
        assert_eq!(trace.id, TRACE);
    }

    #[test]
    fn an_invalid_traceparent_leaves_x_request_id_as_the_trace_id() {
        let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let trace = Trace::of(&headers(&[("traceparent", bad), ("x-request-id", "r1")]));
        assert_eq!(trace.id, "r1");
        assert_eq!(trace.traceparent(), None, "r1 is no W3C trace id");
    }

    #[test]
    fn the_answer_carries_the_trace_id_a_new_span_id_and_the_flags() {
        let trace = Trace::of(&headers(&[("traceparent", VALID)]));
        let answer = trace.traceparent().unwrap();
        let answer = answer.to_str().unwrap();
        let (id, flags) = parse_traceparent(answer).unwrap();
        assert_eq!((id.as_str(), flags), (TRACE, 1));
        assert_ne!(&answer[36..52], "00f067aa0ba902b7", "a span id of its own");
    }

    #[test]
    fn a_fresh_trace_id_is_a_valid_w3c_trace_id() {
        let trace = Trace::of(&HeaderMap::new());
        let answer = trace.traceparent().unwrap();
        let (id, flags) = parse_traceparent(answer.to_str().unwrap()).unwrap();
        assert_eq!((id, flags), (trace.id, 0));
    }
}
