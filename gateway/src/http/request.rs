//! Reading requests: a JSON body within the size limit, list pages and their cursors, and
//! idempotency keys.

use chrono::{DateTime, Utc};
use http::header;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::http::auth::Principal;
use crate::http::error::ApiError;

/// Every request arrives with a streaming body.
pub type Request = http::Request<Incoming>;

/// What a route handler gets from the route table: the request, the caller (authenticated and
/// holding the route's role), the path's parameter and the trace id.
pub struct Call<'a> {
    /// The request, its body not read yet.
    pub req: Request,
    /// Who is calling.
    pub caller: Principal,
    /// The segment under the pattern's `{..}` (the sale, order, policy, coupon or use id);
    /// "" for routes without one.
    pub param: &'a str,
    /// The request's trace id, carried into the events it causes.
    pub trace_id: &'a str,
}

/// The body of a status change (`PATCH` of a sale or a coupon policy).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// The status asked for.
    pub status: String,
}

/// Reads the body (at most `limit` bytes) and decodes it as `T`. A body too large is a 413;
/// a wrong content type a 415; bad JSON, an unknown field or a wrong type a 400 naming the field.
pub async fn read_json<T: DeserializeOwned>(req: Request, limit: usize) -> Result<T, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let bytes = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|err| {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::invalid(format!("could not read the request body: {err}"))
            }
        })?
        .to_bytes();
    decode_json(&bytes)
}

/// Decodes JSON; errors name the field (`quantity: invalid type: string "x", expected u32`).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = strip_position(&inner.to_string());
        if path == "." || path == "?" || path.is_empty() {
            ApiError::invalid(format!("invalid JSON body: {message}"))
        } else {
            ApiError::invalid(format!("{path}: {message}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|_| ApiError::invalid("invalid JSON body: trailing characters"))?;
    Ok(value)
}

/// Rows of a list page when the client does not say.
const DEFAULT_PAGE: u32 = 50;

/// Most rows one list page may have.
const MAX_PAGE: u32 = 200;

/// `limit` (1 to 200, 50 when absent) and the raw `cursor` of a list request.
pub fn page_query(query: Option<&str>) -> Result<(u32, Option<&str>), ApiError> {
    let mut limit = DEFAULT_PAGE;
    let mut cursor = None;
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("limit", v)) => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!("limit: must be between 1 and {MAX_PAGE}"))
                    })?;
            }
            Some(("cursor", v)) => cursor = Some(v),
            _ => {}
        }
    }
    Ok((limit, cursor))
}

/// An id cursor (the last id of an id-ordered page), or 400.
pub fn id_cursor(cursor: &str) -> Result<u64, ApiError> {
    cursor
        .parse()
        .map_err(|_| ApiError::invalid("cursor: not a cursor from this API"))
}

/// Latest time a cursor may carry: 9999-12-31T23:59:59.999Z, the end of MySQL's `DATETIME`
/// range. Earliest: the Unix epoch (every row is younger). A time outside the range would
/// pass the parser and fail in the driver, so it is refused here as the client's mistake.
const CURSOR_MAX_MS: i64 = 253_402_300_799_999;

/// Longest id part of a cursor: longer than any id this API hands out.
const CURSOR_MAX_ID: usize = 128;

/// A `<millis>:<id>` cursor (a time-ordered list's last row), or 400.
pub fn time_id_cursor(cursor: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    cursor
        .split_once(':')
        .and_then(|(ms, id)| {
            let ms: i64 = ms
                .parse()
                .ok()
                .filter(|ms| (0..=CURSOR_MAX_MS).contains(ms))?;
            if id.is_empty() || id.len() > CURSOR_MAX_ID {
                return None;
            }
            Some((DateTime::from_timestamp_millis(ms)?, id.to_owned()))
        })
        .ok_or_else(|| ApiError::invalid("cursor: not a cursor from this API"))
}

/// Longest `Idempotency-Key` a client may choose (it becomes part of a Redis key name).
const IDEMPOTENCY_KEY_MAX_LEN: usize = 128;

/// A client-chosen `Idempotency-Key`: 1 to 128 characters of `[A-Za-z0-9._:-]`.
pub fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    let valid = (1..=IDEMPOTENCY_KEY_MAX_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if valid {
        Ok(Some(key.to_owned()))
    } else {
        Err(ApiError::invalid(format!(
            "Idempotency-Key: 1 to {IDEMPOTENCY_KEY_MAX_LEN} characters of letters, digits, \
             '.', '_', ':' or '-'"
        )))
    }
}

/// serde_json appends " at line 1 column 17"; the field name says more to a client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        quantity: u32,
    }

    #[test]
    fn decode_errors_name_the_field() {
        let err = decode_json::<Body>(br#"{"quantity":"two"}"#).unwrap_err();
        assert!(err.to_string().starts_with("quantity: "), "{err}");
        let err = decode_json::<Body>(br#"{"quantity":1,"extra":2}"#).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
        let err = decode_json::<Body>(b"{").unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON body"), "{err}");
        assert!(decode_json::<Body>(br#"{"quantity":1}"#).is_ok());
    }

    #[test]
    fn cursors_with_times_outside_the_database_range_are_refused() {
        for bad in [
            "-62198755200000:x",
            "-1:x",
            "253402300800000:x",
            "99999999999999999999:x",
            "1700000000000:",
            "abc",
            "1700000000000",
        ] {
            assert!(time_id_cursor(bad).is_err(), "{bad} was accepted");
        }
        let long = format!("1700000000000:{}", "x".repeat(CURSOR_MAX_ID + 1));
        assert!(time_id_cursor(&long).is_err());
        let (at, id) = time_id_cursor("1700000000000:42-abc").unwrap();
        assert_eq!(at.timestamp_millis(), 1_700_000_000_000);
        assert_eq!(id, "42-abc");
        assert!(time_id_cursor("253402300799999:x").is_ok());
        assert!(time_id_cursor("0:x").is_ok());
    }
}
