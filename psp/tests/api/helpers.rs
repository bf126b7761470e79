//! `spawn_psp()`: the real `flashgate-psp serve` binary on a free loopback port, with a small
//! latency and slowness, its log in a file of its own; and a handle with one method per
//! endpoint. The process is killed when the handle is dropped, so a failed assertion never
//! leaves it running.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flashgate-psp");

/// How the provider is started.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `psp.latency_ms`.
    pub latency_ms: u64,
    /// `psp.slow_ms`.
    pub slow_ms: u64,
    /// `psp.failure_share`.
    pub failure_share: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            latency_ms: 5,
            slow_ms: 600,
            failure_share: 0.0,
        }
    }
}

/// A running provider process and a client for it.
pub struct Psp {
    pub addr: SocketAddr,
    /// Its stderr (the log).
    pub log: PathBuf,
    child: Child,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer: status, headers, and the body as JSON (`Null` when it is not JSON) and as text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    /// `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }

    /// `id` of a charge or refund answer.
    pub fn id(&self) -> String {
        self.json["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Whether the answer was given again for its idempotency key.
    pub fn replayed(&self) -> bool {
        self.headers.get("idempotent-replayed").is_some()
    }
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A charge body for `reference` with `token`.
pub fn charge_body(token: &str, reference: &str, amount: u64) -> Value {
    json!({"amount": amount, "payment_token": token, "reference": reference})
}

/// A free loopback address (bound, then released; the provider binds it next).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

/// A client that opens a connection per request: no pooled connection outlives a stopped
/// provider.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// `flashgate-psp serve` with the default test options.
pub async fn spawn_psp() -> Psp {
    spawn_psp_with(Options::default()).await
}

/// `flashgate-psp serve` with `options`, ready.
pub async fn spawn_psp_with(options: Options) -> Psp {
    // Another process may take the released port first: then try another.
    for _ in 0..3 {
        let addr = free_addr();
        let log = std::env::temp_dir().join(format!("{}.log", unique("flashgate-psp-test-")));
        let child = Command::new(BIN)
            .arg("serve")
            .env_remove("FLASHGATE_CONFIG")
            .env("FLASHGATE__PSP__LISTEN", addr.to_string())
            .env("FLASHGATE__PSP__LATENCY_MS", options.latency_ms.to_string())
            .env("FLASHGATE__PSP__SLOW_MS", options.slow_ms.to_string())
            .env(
                "FLASHGATE__PSP__FAILURE_SHARE",
                options.failure_share.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("start flashgate-psp");
        let mut psp = Psp {
            addr,
            log,
            child,
            client: client(),
        };
        if psp.wait_ready().await {
            return psp;
        }
    }
    panic!("flashgate-psp did not become ready");
}

impl Psp {
    /// Waits until `/readyz` answers 200; false when the process ended first or 10 s passed.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Some(reply) = self.try_send(Method::GET, "/readyz", &[], None).await
                && reply.status == StatusCode::OK
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A request; `None` when no answer came (refused, cut).
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Option<Reply> {
        send(&self.client, self.addr, method, path, headers, body).await
    }

    /// A request that must be answered.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        self.try_send(method, path, headers, body)
            .await
            .unwrap_or_else(|| panic!("no answer to {path}"))
    }

    /// `POST /charges` with `key` as `Idempotency-Key` (none when `None`).
    pub async fn charge(&self, key: Option<&str>, body: &Value) -> Reply {
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.send(Method::POST, "/charges", &headers, Some(body.to_string()))
            .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], None).await
    }

    /// `POST /charges/{id}/refund`, with `key` and `body` when given.
    pub async fn refund(&self, id: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.send(
            Method::POST,
            &format!("/charges/{id}/refund"),
            &headers,
            body.map(|b| b.to_string()),
        )
        .await
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// How the process ended (within 15 s).
    pub async fn exit_status(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the provider exits")
            .expect("wait for the provider")
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Psp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One request with `client` to `addr`; `None` when no answer came.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Option<Reply> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .ok()?
        .ok()?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Some(Reply {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    })
}
