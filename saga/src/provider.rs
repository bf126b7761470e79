//! The payment provider, over HTTP: charge, look a charge up by its idempotency key, refund.
//!
//! This module is the one place the saga meets a provider, and the one to change to put a real
//! one (any HTTP PSP with idempotency keys) behind flashgate: map its charge, lookup and refund
//! calls onto [`Provider::charge`], [`Provider::lookup`] and [`Provider::refund`], and its
//! answers onto [`ChargeReply`], [`Found`] and [`RefundReply`] — succeeded, declined for good,
//! or unknown (anything that may change on a retry). Everything else in the saga (the steps,
//! the keys, the retries) stays as it is. A real provider also needs TLS (a `hyper-rustls`
//! connector in [`Provider::new`]) and its credentials (a header, from a
//! [`flashgate_config::Secret`] setting). As written it speaks the contract of
//! `flashgate-psp`, the virtual provider (docs in `psp/` and the README):
//! `POST /charges` with an `Idempotency-Key` header, `GET /charges?idempotency_key=K`,
//! `POST /charges/{id}/refund`.
//!
//! Every call has one deadline (`saga.provider_timeout_ms`) for connecting, sending and
//! reading the whole answer: a call that runs out of it is an unknown outcome, never a decline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::health::Health;
use crate::metrics::{Call, Metrics};
use crate::steps::{ChargeReply, Found, RefundReply};

/// Most idle connections kept to the provider (one per call in flight is enough).
const IDLE_CONNECTIONS: usize = 256;

/// A client of the provider at one base URL.
#[derive(Clone)]
pub struct Provider {
    /// Keeps connections alive between calls (the provider's latency, not a handshake per call).
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port` (a path prefix is kept), without a trailing slash.
    base: String,
    /// The deadline of one call, connect to last byte.
    timeout: Duration,
    /// Every call is counted by result and timed.
    metrics: Arc<Metrics>,
    /// Whether it answers (shared by the clones).
    health: Arc<Health>,
}

/// What came back from one HTTP exchange.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Provider {
    /// A client of the provider at `base_url` (`http://` only: see the module's doc for TLS).
    pub fn new(base_url: &str, timeout: Duration, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        if !base_url.starts_with("http://") {
            anyhow::bail!(
                "saga.provider_url {base_url:?}: only http:// is spoken here; a provider behind \
                 TLS needs a TLS connector in saga/src/provider.rs"
            );
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .build(connector);
        Ok(Self {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            timeout,
            metrics,
            health: Arc::new(Health::default()),
        })
    }

    /// Whether the provider answers, as the calls found it.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// `POST /charges` of `amount` with `token` for order `reference`, under `key`.
    pub async fn charge(
        &self,
        key: &str,
        amount: u64,
        token: &str,
        reference: &str,
    ) -> ChargeReply {
        let body = json!({"amount": amount, "payment_token": token, "reference": reference});
        let answer = self
            .call(Method::POST, "/charges".to_owned(), Some(key), Some(body))
            .await;
        let reply = match answer {
            Ok(answer) => charge_reply(answer.status, &answer.body),
            Err(why) => ChargeReply::Unknown(why),
        };
        let result = match &reply {
            ChargeReply::Succeeded(_) => "succeeded",
            ChargeReply::Declined(_) => "declined",
            ChargeReply::Unknown(_) => "unknown",
        };
        self.metrics.provider_result(Call::Charge, result);
        self.health.observe(result != "unknown");
        reply
    }

    /// `GET /charges?idempotency_key=K`: the charge made under `key`, if any. `Err` when the
    /// provider could not say (the lookup is tried again later).
    pub async fn lookup(&self, key: &str) -> Result<Found, String> {
        let path = format!("/charges?idempotency_key={}", encode(key));
        let answer = self.call(Method::GET, path, None, None).await;
        let found = answer.and_then(|answer| lookup_reply(answer.status, &answer.body));
        let result = match &found {
            Ok(Found::Succeeded(_)) => "succeeded",
            Ok(Found::Declined(_)) => "declined",
            Ok(Found::Nothing) => "not_found",
            Err(_) => "unknown",
        };
        self.metrics.provider_result(Call::Lookup, result);
        self.health.observe(result != "unknown");
        found
    }

    /// `POST /charges/{charge}/refund` under `key`: the provider refunds a charge at most once.
    pub async fn refund(&self, charge: &str, key: &str) -> RefundReply {
        let path = format!("/charges/{}/refund", encode(charge));
        let answer = self
            .call(Method::POST, path, Some(key), Some(json!({})))
            .await;
        let reply = match answer {
            Ok(answer) => refund_reply(answer.status, &answer.body),
            Err(why) => RefundReply::Unknown(why),
        };
        let result = match &reply {
            RefundReply::Refunded(_) => "refunded",
            RefundReply::Refused(_) => "refused",
            RefundReply::Unknown(_) => "unknown",
        };
        self.metrics.provider_result(Call::Refund, result);
        self.health.observe(result != "unknown");
        reply
    }

    /// One exchange within the deadline; `Err` says why there is no answer.
    async fn call(
        &self,
        method: Method,
        path: String,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let bytes = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|err| format!("request: {err}"))?;
        let started = Instant::now();
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| format!("unreachable: {err}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| format!("answer cut short: {err}"))?
                .to_bytes();
            Ok(Answer {
                status,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            })
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
        self.metrics.provider_latency(started.elapsed());
        answer
    }
}

/// A charge call's answer: 2xx with a succeeded charge → succeeded; 402, and any other 4xx
/// that is about the payment itself, → declined; the rest (408, 409, 422, 425, 429, 401/403
/// which are about our own credentials, 5xx, a 2xx of a charge still processing) → unknown.
pub fn charge_reply(status: StatusCode, body: &Value) -> ChargeReply {
    let charge_status = body["status"].as_str().unwrap_or_default();
    match status.as_u16() {
        200..=299 if charge_status == "succeeded" => match body["id"].as_str() {
            Some(id) if !id.is_empty() => ChargeReply::Succeeded(id.to_owned()),
            _ => ChargeReply::Unknown("a succeeded charge without an id".to_owned()),
        },
        200..=299 if charge_status == "declined" => {
            ChargeReply::Declined(failure_code(status, body))
        }
        200..=299 => ChargeReply::Unknown(format!("charge {charge_status:?}")),
        401 | 403 | 408 | 409 | 422 | 425 | 429 => {
            ChargeReply::Unknown(format!("HTTP {}", status.as_u16()))
        }
        400..=499 => ChargeReply::Declined(failure_code(status, body)),
        _ => ChargeReply::Unknown(format!("HTTP {}", status.as_u16())),
    }
}

/// A lookup's answer: 200 with a final charge → found; 404 → nothing; else no answer.
pub fn lookup_reply(status: StatusCode, body: &Value) -> Result<Found, String> {
    match status.as_u16() {
        200 => match (body["status"].as_str(), body["id"].as_str()) {
            (Some("succeeded"), Some(id)) => Ok(Found::Succeeded(id.to_owned())),
            (Some("declined"), _) => Ok(Found::Declined(failure_code(status, body))),
            (other, _) => Err(format!("charge {other:?}")),
        },
        404 => Ok(Found::Nothing),
        other => Err(format!("HTTP {other}")),
    }
}

/// A refund call's answer: 2xx → refunded; 404 and 409 (no such charge, not refundable) →
/// refused; the rest → unknown.
pub fn refund_reply(status: StatusCode, body: &Value) -> RefundReply {
    match status.as_u16() {
        200..=299 => match body["id"].as_str() {
            Some(id) if !id.is_empty() => RefundReply::Refunded(id.to_owned()),
            _ => RefundReply::Unknown("a refund without an id".to_owned()),
        },
        404 | 409 => RefundReply::Refused(format!(
            "HTTP {}: {}",
            status.as_u16(),
            failure_code(status, body)
        )),
        other => RefundReply::Unknown(format!("HTTP {other}")),
    }
}

/// The provider's reason: `failure_code`, else `error.code`, else `http_<status>`; at most
/// 64 bytes (the column).
fn failure_code(status: StatusCode, body: &Value) -> String {
    let code = body["failure_code"]
        .as_str()
        .or_else(|| body["error"]["code"].as_str())
        .or_else(|| body["code"].as_str())
        .filter(|code| !code.is_empty())
        .map_or_else(|| format!("http_{}", status.as_u16()), str::to_owned);
    let mut end = code.len().min(64);
    while !code.is_char_boundary(end) {
        end -= 1;
    }
    code[..end].to_owned()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(n: u16) -> StatusCode {
        StatusCode::from_u16(n).expect("status")
    }

    #[test]
    fn a_charge_succeeds_only_with_a_succeeded_charge_and_its_id() {
        let ok = json!({"id": "ch_1", "status": "succeeded"});
        assert_eq!(
            charge_reply(code(201), &ok),
            ChargeReply::Succeeded("ch_1".into())
        );
        assert!(matches!(
            charge_reply(code(200), &json!({"status": "processing", "id": "ch_1"})),
            ChargeReply::Unknown(_)
        ));
        assert!(matches!(
            charge_reply(code(201), &json!({"status": "succeeded"})),
            ChargeReply::Unknown(_)
        ));
    }

    #[test]
    fn a_402_or_a_4xx_about_the_payment_is_a_decline_and_the_rest_is_unknown() {
        let declined = json!({"id": "ch_2", "status": "declined", "failure_code": "card_declined"});
        assert_eq!(
            charge_reply(code(402), &declined),
            ChargeReply::Declined("card_declined".into())
        );
        assert_eq!(
            charge_reply(code(400), &json!({"error": {"code": "invalid_request"}})),
            ChargeReply::Declined("invalid_request".into())
        );
        assert_eq!(
            charge_reply(code(404), &Value::Null),
            ChargeReply::Declined("http_404".into())
        );
        for unknown in [401, 403, 408, 409, 422, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    charge_reply(code(unknown), &Value::Null),
                    ChargeReply::Unknown(_)
                ),
                "{unknown}"
            );
        }
    }

    #[test]
    fn a_lookup_finds_a_final_charge_or_nothing_and_otherwise_cannot_say() {
        assert_eq!(
            lookup_reply(code(200), &json!({"id": "ch_1", "status": "succeeded"})),
            Ok(Found::Succeeded("ch_1".into()))
        );
        assert_eq!(
            lookup_reply(
                code(200),
                &json!({"id": "ch_1", "status": "declined", "failure_code": "invalid_token"})
            ),
            Ok(Found::Declined("invalid_token".into()))
        );
        assert_eq!(lookup_reply(code(404), &Value::Null), Ok(Found::Nothing));
        assert!(lookup_reply(code(503), &Value::Null).is_err());
        assert!(lookup_reply(code(200), &json!({"status": "processing"})).is_err());
    }

    #[test]
    fn a_refund_is_done_refused_or_unknown() {
        assert_eq!(
            refund_reply(code(200), &json!({"id": "re_1", "status": "succeeded"})),
            RefundReply::Refunded("re_1".into())
        );
        assert!(matches!(
            refund_reply(code(409), &Value::Null),
            RefundReply::Refused(_)
        ));
        assert!(matches!(
            refund_reply(code(503), &Value::Null),
            RefundReply::Unknown(_)
        ));
    }

    #[test]
    fn keys_and_ids_are_percent_encoded_in_urls_and_codes_fit_their_column() {
        assert_eq!(encode("7-ab:1"), "7-ab%3A1");
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
        let long = json!({"failure_code": "é".repeat(40)});
        assert!(failure_code(code(402), &long).len() <= 64);
    }
}
