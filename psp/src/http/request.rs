//! Reading requests: the idempotency key, a JSON body within its size limit and time, and the
//! query of a list.

use std::time::Duration;

use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::charge::check_text;
use crate::http::error::ApiError;

/// Every request arrives with a streaming body.
pub type Request = http::Request<Incoming>;

/// Largest request body read, in bytes: a charge or refund is a few hundred.
pub const MAX_BODY: usize = 16 * 1024;

/// Longest wait for a body to arrive once the headers have: a client that stalls does not
/// hold a connection for ever.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Idempotency-Key` header: `None` when absent; 400 when present but empty, longer than
/// 255 bytes or not visible ASCII.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key: must be visible ASCII characters"))?;
    check_text("Idempotency-Key", key)?;
    Ok(Some(key.to_owned()))
}

/// Reads the body (at most [`MAX_BODY`] bytes, within 10 s) and decodes it as `T`; an empty
/// body decodes as `empty` when one is given, else it is a 400. The body is taken as JSON
/// whatever its `Content-Type`.
pub async fn read_json<T: DeserializeOwned>(req: Request, empty: Option<T>) -> Result<T, ApiError> {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| ApiError::invalid("the request body did not arrive within 10 s"))?;
    let bytes = collected
        .map_err(|err| {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::PayloadTooLarge(MAX_BODY)
            } else {
                ApiError::invalid(format!("could not read the request body: {err}"))
            }
        })?
        .to_bytes();
    match empty {
        Some(empty) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(empty),
        _ => decode_json(&bytes),
    }
}

/// Decodes JSON; an error names the field (`amount: invalid type: string "x", expected u64`).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        // "... at line 1 column 9" says nothing to a client that sent one line.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(text, _)| text);
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

/// The parameters of a query string, percent-decoded (`+` stays a plus: RFC 3986, not HTML
/// forms). A parameter not in `known`, given twice, or badly encoded is a 400.
pub fn query_params(
    query: Option<&str>,
    known: &[&'static str],
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let mut params: Vec<(&'static str, String)> = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        let Some(&known_name) = known.iter().find(|k| **k == name) else {
            return Err(ApiError::invalid(format!(
                "unknown query parameter {name:?} (known: {})",
                known.join(", ")
            )));
        };
        if params.iter().any(|(n, _)| *n == known_name) {
            return Err(ApiError::invalid(format!("{known_name}: given twice")));
        }
        params.push((known_name, percent_decode(value)?));
    }
    Ok(params)
}

/// `%XX` escapes decoded; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, ApiError> {
    let bad = || ApiError::invalid(format!("badly encoded query text {text:?}"));
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded_and_unknown_or_repeated_ones_refused() {
        let known = ["idempotency_key", "limit"];
        let params = query_params(Some("idempotency_key=ord%3A1+a&limit=5"), &known).expect("ok");
        assert_eq!(
            params,
            [
                ("idempotency_key", "ord:1+a".to_owned()),
                ("limit", "5".to_owned())
            ]
        );
        assert!(query_params(Some("other=1"), &known).is_err());
        assert!(query_params(Some("limit=1&limit=2"), &known).is_err());
        assert!(query_params(Some("limit=%4"), &known).is_err());
        assert!(query_params(Some("limit=%ff"), &known).is_err());
        assert_eq!(query_params(None, &known).expect("ok"), []);
    }

    #[test]
    fn a_bad_body_is_a_400_naming_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            amount: u64,
        }
        let err = decode_json::<Body>(br#"{"amount": "x"}"#).expect_err("refused");
        assert!(err.to_string().starts_with("amount: invalid type"), "{err}");
        let err = decode_json::<Body>(b"{").expect_err("refused");
        assert!(err.to_string().starts_with("invalid JSON body"), "{err}");
        assert!(decode_json::<Body>(br#"{"amount": 1} x"#).is_err());
    }
}
