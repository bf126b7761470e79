//! The HTTP client of the webhook and Slack channels: one connection pool, `http://` and
//! `https://` (the system's TLS through native-tls), one deadline per POST (connect, send and
//! the whole answer).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_tls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Most of an answer's body read (for the error message of a refused delivery).
const ANSWER_SHOWN: usize = 200;

/// A pooled HTTP(S) client.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client keeping a few idle connections per endpoint.
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = HttpsConnector::new_with_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(16)
            .build(connector);
        Self { client }
    }

    /// POSTs `body` as JSON to `url` with `headers` within `timeout`; `Err` says why it did
    /// not end with a 2xx answer.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "flashgate-notifier");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|err| format!("bad request: {err}"))?;
        let exchange = async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|err| format!("no answer: {err}"))?;
            let status = answer.status();
            let body = answer
                .into_body()
                .collect()
                .await
                .map_err(|err| format!("answer cut short: {err}"))?
                .to_bytes();
            if status.is_success() {
                Ok(())
            } else {
                let shown = String::from_utf8_lossy(&body[..body.len().min(ANSWER_SHOWN)]);
                Err(format!("answered {}: {}", status.as_u16(), shown.trim()))
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}
