//! One HTTP/1.1 connection to the gateway on hyper's client, reopened after a failure; and
//! what an answer says (status, error code, order or coupon id).

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

/// Where the gateway listens, parsed once.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    host: HeaderValue,
}

impl Target {
    /// Parses `http://host:port` (only plain HTTP: the gateway sits behind a TLS terminator).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "`{url}`: only http:// targets are supported"
        );
        let authority = uri
            .authority()
            .with_context(|| format!("`{url}` has no host"))?
            .as_str()
            .to_owned();
        let host = HeaderValue::from_str(&authority)?;
        Ok(Self { authority, host })
    }
}

/// The error codes of the HTTP contract (DESIGN.md), so counting answers allocates nothing.
const KNOWN_CODES: &[&str] = &[
    "invalid_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "sold_out",
    "limit_exceeded",
    "sale_not_active",
    "already_claimed",
    "exhausted",
    "policy_not_active",
    "order_not_cancellable",
    "order_not_payable",
    "payment_window_closed",
    "order_not_eligible",
    "payload_too_large",
    "unsupported_media_type",
    "idempotency_key_reused",
    "rate_limited",
    "overloaded",
    "queue_pass_required",
    "queue_not_open",
    "token_revoked",
    "internal",
];

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer with its status and the fields the checks need.
    Http {
        /// The status code.
        status: StatusCode,
        /// `error.code` of an error answer (`other` when not in the contract).
        code: Option<&'static str>,
        /// `order_id` (a 202 purchase) or `coupon_id` (a 201 claim), as text.
        id: Option<String>,
    },
    /// No answer: connection refused or reset, or past the request timeout.
    Failed(&'static str),
}

/// How answers are grouped in counts: the status (0 for no answer) and the error code or the
/// reason there was no answer (empty for success).
pub type Outcome = (u16, &'static str);

impl Answer {
    /// The group this answer is counted in.
    pub fn outcome(&self) -> Outcome {
        match self {
            Answer::Http { status, code, .. } => (status.as_u16(), code.unwrap_or("")),
            Answer::Failed(why) => (0, why),
        }
    }

    /// `202`, `409 sold_out`, `error: timeout`.
    pub fn label(&self) -> String {
        label(self.outcome())
    }

    /// A 5xx answer or none at all.
    pub fn is_failure(&self) -> bool {
        is_failure(self.outcome())
    }
}

/// `202`, `409 sold_out`, `error: timeout`: the text of an outcome.
pub fn label((status, code): Outcome) -> String {
    match (status, code) {
        (0, why) => format!("error: {why}"),
        (status, "") => status.to_string(),
        (status, code) => format!("{status} {code}"),
    }
}

/// A 5xx answer or none at all.
pub fn is_failure((status, _): Outcome) -> bool {
    status == 0 || status >= 500
}

#[derive(Deserialize)]
struct Fields {
    order_id: Option<String>,
    coupon_id: Option<serde_json::Value>,
    error: Option<ErrorFields>,
}

#[derive(Deserialize)]
struct ErrorFields {
    code: String,
}

/// What an answer says: its status, error code and order or coupon id.
pub fn decode(status: StatusCode, body: &[u8]) -> Answer {
    let fields = serde_json::from_slice::<Fields>(body).ok();
    let (code, id) = match fields {
        Some(f) => (
            f.error.map(|e| {
                KNOWN_CODES
                    .iter()
                    .copied()
                    .find(|known| *known == e.code)
                    .unwrap_or("other")
            }),
            f.order_id.or_else(|| {
                f.coupon_id.map(|c| match c {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
            }),
        ),
        None => (None, None),
    };
    Answer::Http { status, code, id }
}

/// One connection, opened on first use and again after any failure.
pub struct Connection {
    target: Target,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection to `target` whose requests may take `timeout` each.
    pub fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            sender: None,
        }
    }

    /// Sends one request and reads the whole answer, within the timeout.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        authorization: &HeaderValue,
        body: Option<Bytes>,
    ) -> Answer {
        match self.call(method, path, authorization, body).await {
            Ok((status, bytes)) => decode(status, &bytes),
            Err(err) => Answer::Failed(short_reason(&err)),
        }
    }

    /// Sends one request and returns the status and the raw body (for the manager API).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        authorization: &HeaderValue,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.call_with(method, path, authorization, None, body)
            .await
    }

    /// [`Connection::call`] with one more header (a purchase's `Queue-Pass`).
    pub async fn call_with(
        &mut self,
        method: Method,
        path: &str,
        authorization: &HeaderValue,
        extra: Option<(&'static str, HeaderValue)>,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let exchanged = tokio::time::timeout(
            self.timeout,
            self.exchange(method.clone(), path, authorization, extra, body),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{method} {path}: timeout ({:?})", self.timeout))
        .and_then(|r| r.with_context(|| format!("{method} {path}")));
        if exchanged.is_err() {
            self.sender = None;
        }
        exchanged
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        authorization: &HeaderValue,
        extra: Option<(&'static str, HeaderValue)>,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => self.sender.insert(sender),
            _ => {
                let fresh = open(&self.target).await?;
                self.sender.insert(fresh)
            }
        };
        sender.ready().await?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.target.host.clone())
            .header(header::AUTHORIZATION, authorization.clone());
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some((name, value)) = extra {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(body.unwrap_or_default()))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// Opens a connection; its driver runs on a task of its own until either side closes it.
async fn open(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let connect = async {
        let stream = TcpStream::connect(&target.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        anyhow::Ok(sender)
    };
    connect
        .await
        .with_context(|| format!("connecting to {}", target.authority))
}

/// A short, stable reason for the status counts (`connect`, `reset`, ...), not the full chain.
fn short_reason(err: &anyhow::Error) -> &'static str {
    let text = format!("{err:#}").to_lowercase();
    if text.contains("timeout") {
        "timeout"
    } else if text.contains("connecting") {
        "connect"
    } else if text.contains("reset") || text.contains("closed") || text.contains("broken pipe") {
        "connection closed"
    } else {
        "transport"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_labelled_by_status_and_error_code() {
        let sold_out = decode(
            StatusCode::CONFLICT,
            br#"{"error":{"code":"sold_out","message":"m"}}"#,
        );
        assert_eq!(sold_out.label(), "409 sold_out");
        let admitted = decode(
            StatusCode::ACCEPTED,
            br#"{"order_id":"7-abc","quantity":1}"#,
        );
        assert_eq!(admitted.label(), "202");
        assert!(matches!(admitted, Answer::Http { id: Some(ref id), .. } if id == "7-abc"));
        let claimed = decode(StatusCode::CREATED, br#"{"coupon_id":12,"policy_id":3}"#);
        assert!(matches!(claimed, Answer::Http { id: Some(ref id), .. } if id == "12"));
        assert!(decode(StatusCode::BAD_GATEWAY, b"<html>").is_failure());
        assert!(Answer::Failed("timeout").is_failure());
        assert_eq!(Answer::Failed("timeout").label(), "error: timeout");
        let odd = decode(StatusCode::CONFLICT, br#"{"error":{"code":"brand_new"}}"#);
        assert_eq!(odd.label(), "409 other");
    }

    #[test]
    fn only_plain_http_targets_are_accepted() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080").unwrap().authority,
            "127.0.0.1:8080"
        );
        assert!(Target::parse("https://example.com").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
