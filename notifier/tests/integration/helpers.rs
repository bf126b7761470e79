//! `Harness`: what a notification goes through, on the local stack, isolated per test — a
//! fresh MySQL database (migrated), topics of its own, a consumer group of its own, an SMTP
//! server on loopback (`scripts/smtp_sink.py`, Debian's aiosmtpd) and HTTP receivers in this
//! process that check the webhook signature and count what they accepted. The notifier runs in
//! this process ([`Harness::start`]) or as the real binary ([`Harness::spawn_binary`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use flashgate_config::{EmailSettings, Secret, Settings, SmtpTls, WebhookSettings};
use flashgate_notifier::channels::webhook;
use flashgate_notifier::metrics::Metrics;
use flashgate_notifier::startup::Notifier;
pub use flashgate_testkit::unique;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sqlx::MySqlPool;
use tokio::sync::oneshot;

/// The signing secret of the test webhooks.
pub const SECRET: &str = "whsec_test_0123456789abcdef";

/// How long a test waits for deliveries.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// 200 after checking the signature.
    Ok = 0,
    /// 500.
    Fail = 1,
    /// Never answers (holds the request open).
    Hang = 2,
    /// Answers as `Ok` after half a second (a slow receiver: a delivery stays in hand a while).
    Slow = 3,
}

/// One request a receiver accepted (answered 2xx).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// `Flashgate-Event-Id`, or the Slack text.
    pub event_id: String,
    /// The body.
    pub body: Value,
}

/// An HTTP receiver in this process: checks `Flashgate-Signature` (when `signed`) and counts.
pub struct Receiver {
    /// Its address.
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Requests accepted (2xx answered), in order.
    accepted: Arc<Mutex<Vec<Accepted>>>,
    /// Every request that arrived, whatever the answer.
    pub hits: Arc<AtomicU64>,
    /// Requests whose signature did not verify (answered 400).
    pub bad_signatures: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver on a free port; `signed` checks the webhook signature with [`SECRET`].
    pub async fn spawn(signed: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU8::new(Mode::Ok as u8));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicU64::new(0));
        let bad_signatures = Arc::new(AtomicU64::new(0));
        let state = (
            mode.clone(),
            accepted.clone(),
            hits.clone(),
            bad_signatures.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, hyper::Error>(answer(request, signed, state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            mode,
            accepted,
            hits,
            bad_signatures,
            task,
        }
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers `mode` from now on.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// What it accepted so far.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().expect("lock").clone()
    }

    /// How many times it accepted each event id.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for accepted in self.accepted() {
            *counts.entry(accepted.event_id).or_default() += 1;
        }
        counts
    }

    /// The settings of a webhook pointing here.
    pub fn webhook(&self, timeout_ms: u64) -> WebhookSettings {
        WebhookSettings {
            url: self.url(),
            secret: Secret::new(SECRET),
            timeout_ms,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type State = (
    Arc<AtomicU8>,
    Arc<Mutex<Vec<Accepted>>>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
);

async fn answer(request: Request<Incoming>, signed: bool, state: State) -> Response<Full<Bytes>> {
    let (mode, accepted, hits, bad_signatures) = state;
    hits.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signature = header(webhook::SIGNATURE_HEADER);
    let event_id = header(webhook::EVENT_ID_HEADER);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = |status: StatusCode| {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        response
    };
    match mode.load(Ordering::SeqCst) {
        1 => return reply(StatusCode::INTERNAL_SERVER_ERROR),
        2 => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            return reply(StatusCode::GATEWAY_TIMEOUT);
        }
        3 => tokio::time::sleep(Duration::from_millis(500)).await,
        _ => {}
    }
    if signed {
        let now = Utc::now().timestamp();
        if webhook::verify(SECRET.as_bytes(), &signature, &body, now, 300).is_err() {
            bad_signatures.fetch_add(1, Ordering::SeqCst);
            return reply(StatusCode::BAD_REQUEST);
        }
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let event_id = if signed {
        event_id
    } else {
        body["text"].as_str().unwrap_or_default().to_owned()
    };
    accepted
        .lock()
        .expect("lock")
        .push(Accepted { event_id, body });
    reply(StatusCode::OK)
}

/// `scripts/smtp_sink.py` on a free port, writing to a file of its own.
pub struct SmtpSink {
    /// Its port.
    pub port: u16,
    out: PathBuf,
    child: Child,
}

impl SmtpSink {
    /// Starts it and waits until it listens.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let out = std::env::temp_dir().join(format!("{}.jsonl", unique("flashgate-mail-")));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/smtp_sink.py");
        let python = if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let child = Command::new(python)
            .arg(script)
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .expect("start scripts/smtp_sink.py (python3-aiosmtpd, see scripts/stack.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP sink did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, out, child }
    }

    /// The messages received: (recipient, the whole message).
    pub fn messages(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|m| {
                (
                    m["rcpt_tos"][0].as_str().unwrap_or_default().to_owned(),
                    m["data"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

/// Settings, database and topics of one test.
pub struct Harness {
    /// The notifier's settings (its routes and endpoints set by the test).
    pub settings: Settings,
    /// The test's database.
    pub db: MySqlPool,
    producer: FutureProducer,
}

impl Harness {
    /// A fresh database and topics; email to `smtp_port` in plain text; quick retries.
    pub async fn new(smtp_port: u16) -> Self {
        let mut settings = flashgate_testkit::stack_settings();
        let db = flashgate_testkit::fresh_database(&mut settings).await;
        flashgate_persister::db::migrate(&db)
            .await
            .expect("migrate");
        let fresh = |prefix: &'static str| flashgate_testkit::fresh_topic(&settings, prefix, 2);
        let topics = (
            fresh("flashgate.test-order-events-").await,
            fresh("flashgate.test-compensations-").await,
            fresh("flashgate.test-coupons-").await,
            fresh("flashgate.test-dead-letter-").await,
        );
        (
            settings.kafka.order_events_topic,
            settings.kafka.compensations_topic,
            settings.kafka.coupons_topic,
            settings.kafka.dead_letter_topic,
        ) = topics;
        settings.persister.migrate_on_start = false;
        let notifier = &mut settings.notifier;
        notifier.listen = "127.0.0.1:0".parse().expect("addr");
        notifier.consumer_group = unique("flashgate-test-notifier-");
        notifier.templates_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
        notifier.email = EmailSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            tls: SmtpTls::None,
            from: "flashgate <noreply@flashgate.test>".into(),
            timeout_ms: 5_000,
            ..EmailSettings::default()
        };
        notifier.retry_base_ms = 100;
        notifier.retry_cap_ms = 500;
        notifier.sweep_interval_ms = 200;
        let producer = settings.kafka.producer_config().create().expect("producer");
        Self {
            settings,
            db,
            producer,
        }
    }

    /// Adds the webhook `name` (a receiver's, e.g. `shop.webhook(2_000)`).
    pub fn add_webhook(&mut self, name: &str, webhook: WebhookSettings) {
        self.settings
            .notifier
            .webhooks
            .insert(name.to_owned(), webhook);
    }

    /// Routes `kinds` to `channels`.
    pub fn route(&mut self, kinds: &[&str], channels: &[&str]) {
        for kind in kinds {
            let routes = self
                .settings
                .notifier
                .routes
                .entry((*kind).to_owned())
                .or_default();
            routes.extend(channels.iter().map(|c| (*c).to_owned()));
        }
    }

    /// Gives `user` the address `email`.
    pub async fn contact(&self, user: &str, email: &str) {
        sqlx::query("INSERT INTO user_contacts (user_id, email) VALUES (?, ?)")
            .bind(user)
            .bind(email)
            .execute(&self.db)
            .await
            .expect("insert contact");
    }

    /// Publishes `event` (from [`event`]) to `topic`, keyed by `key`, with `headers`.
    pub async fn publish_with(
        &self,
        topic: &str,
        key: &str,
        event: &Value,
        headers: &[(&str, &str)],
    ) {
        let payload = serde_json::to_vec(event).expect("json");
        let mut owned = OwnedHeaders::new();
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        self.producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(&payload)
                    .headers(owned),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)
            .expect("publish");
    }

    /// Publishes `event` to the topic its type travels on (as the persister and the saga do).
    pub async fn publish(&self, event: &Value) {
        let topic = self.topic_of(event["type"].as_str().expect("type"));
        let key = event["data"]["order_id"]
            .as_str()
            .or(event["data"]["coupon_id"].as_str())
            .unwrap_or("k")
            .to_owned();
        self.publish_with(&topic, &key, event, &[]).await;
    }

    /// The topic events of `kind` are published on.
    pub fn topic_of(&self, kind: &str) -> String {
        let kafka = &self.settings.kafka;
        match kind {
            "order.rejected" | "coupon.rejected" | "points.rejected" => {
                kafka.compensations_topic.clone()
            }
            "coupon.issued" => kafka.coupons_topic.clone(),
            _ => kafka.order_events_topic.clone(),
        }
    }

    /// The status and attempts of every delivery row, by (event id, channel).
    pub async fn rows(&self) -> Vec<(String, String, String, String, u32)> {
        sqlx::query_as(
            "SELECT event_id, channel, target, status, attempts FROM notification_deliveries \
             ORDER BY id",
        )
        .fetch_all(&self.db)
        .await
        .expect("rows")
    }

    /// Runs the notifier in this process.
    pub async fn start(&self) -> Running {
        let notifier = Notifier::build(self.settings.clone())
            .await
            .expect("notifier builds");
        let addr = notifier.local_addr();
        let metrics = notifier.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(notifier.run_until(async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The real binary on these settings: the notifier's section as a TOML file, the
    /// database and topics as `FLASHGATE__...` variables (over the stack's, inherited).
    pub fn spawn_binary(&self, listen: SocketAddr) -> Process {
        let n = &self.settings.notifier;
        let mut toml = String::from("[notifier]\n");
        toml.push_str(&format!(
            "listen = \"{listen}\"\nconsumer_group = \"{}\"\ntemplates_dir = {:?}\n\
             retry_base_ms = {}\nretry_cap_ms = {}\nsweep_interval_ms = {}\nmax_attempts = {}\n\
             breaker_failures = {}\nbreaker_open_ms = {}\n",
            n.consumer_group,
            n.templates_dir,
            n.retry_base_ms,
            n.retry_cap_ms,
            n.sweep_interval_ms,
            n.max_attempts,
            n.breaker_failures,
            n.breaker_open_ms
        ));
        toml.push_str("[notifier.routes]\n");
        for (kind, channels) in &n.routes {
            toml.push_str(&format!("{kind:?} = {channels:?}\n"));
        }
        for (name, hook) in &n.webhooks {
            toml.push_str(&format!(
                "[notifier.webhooks.{name}]\nurl = {:?}\nsecret = {:?}\ntimeout_ms = {}\n",
                hook.url,
                hook.secret.expose(),
                hook.timeout_ms
            ));
        }
        for (name, slack) in &n.slack {
            toml.push_str(&format!(
                "[notifier.slack.{name}]\nurl = {:?}\n",
                slack.url.expose()
            ));
        }
        let e = &n.email;
        toml.push_str(&format!(
            "[notifier.email]\nhost = {:?}\nport = {}\ntls = \"none\"\nfrom = {:?}\n",
            e.host, e.port, e.from
        ));
        let path = std::env::temp_dir().join(format!("{}.toml", unique("flashgate-notifier-")));
        std::fs::write(&path, toml).expect("write config");
        let kafka = &self.settings.kafka;
        Command::new(env!("CARGO_BIN_EXE_flashgate-notifier"))
            .arg("--config")
            .arg(&path)
            .arg("run")
            .env("FLASHGATE__MYSQL__URL", self.settings.mysql.url.expose())
            .env(
                "FLASHGATE__KAFKA__ORDER_EVENTS_TOPIC",
                &kafka.order_events_topic,
            )
            .env(
                "FLASHGATE__KAFKA__COMPENSATIONS_TOPIC",
                &kafka.compensations_topic,
            )
            .env("FLASHGATE__KAFKA__COUPONS_TOPIC", &kafka.coupons_topic)
            .env(
                "FLASHGATE__KAFKA__DEAD_LETTER_TOPIC",
                &kafka.dead_letter_topic,
            )
            .env("FLASHGATE__PERSISTER__MIGRATE_ON_START", "false")
            // The killed member's partitions come back to the group after its session times out.
            .env("FLASHGATE__KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("FLASHGATE__LOG__FORMAT", "json")
            .stdout(Stdio::null())
            .spawn()
            .map(Process)
            .expect("start flashgate-notifier")
    }
}

/// The binary, SIGKILLed when dropped (a failed test leaves nothing running).
pub struct Process(Child);

impl Process {
    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A notifier running in this process.
pub struct Running {
    /// Its operational address.
    pub addr: SocketAddr,
    /// Its counters.
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Stops it gracefully and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("notifier ran cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An event envelope as the producers write it.
pub fn event(kind: &str, id: &str, data: Value) -> Value {
    json!({
        "type": kind,
        "version": 1,
        "event_id": format!("{kind}:{id}"),
        "occurred_at": Utc::now().to_rfc3339(),
        "trace_id": unique("trace-"),
        "data": data,
    })
}

/// One event of every kind a shopper is told about, for `user` (`tag` makes the ids unique).
pub fn shopper_events(tag: &str, user: &str) -> Vec<Value> {
    let order = format!("{tag}-o");
    let order_data = |end: &str| {
        json!({"order_id": format!("{order}-{end}"), "sale_id": 7, "user_id": user, "quantity": 1,
               "end": end, "reason": "test", "at": Utc::now().to_rfc3339()})
    };
    vec![
        event("order.paid", &format!("{order}-paid"), order_data("paid")),
        event(
            "order.cancelled",
            &format!("{order}-cancelled"),
            order_data("cancelled"),
        ),
        event(
            "order.expired",
            &format!("{order}-expired"),
            order_data("expired"),
        ),
        event(
            "order.rejected",
            &format!("{order}-rejected"),
            json!({"order_id": format!("{order}-rejected"), "sale_id": 7, "user_id": user,
                   "quantity": 1, "reason": "sold out in the system of record"}),
        ),
        event(
            "payment.failed",
            &format!("{order}-declined"),
            json!({"order_id": format!("{order}-declined"), "sale_id": 7, "user_id": user,
                   "amount": 1200, "failure_code": "card_declined", "attempts": 1,
                   "at": Utc::now().to_rfc3339()}),
        ),
        event(
            "coupon.issued",
            &format!("{tag}-c1"),
            json!({"coupon_id": format!("{tag}-c1"), "policy_id": 3, "user_id": user, "claim_no": 1,
                   "issued_at": Utc::now().to_rfc3339(), "expires_at": Utc::now().to_rfc3339()}),
        ),
        event(
            "coupon.rejected",
            &format!("{tag}-c2"),
            json!({"coupon_id": format!("{tag}-c2"), "policy_id": 3, "user_id": user,
                   "reason": "exhausted"}),
        ),
        event(
            "points.rejected",
            &format!("{tag}-use"),
            json!({"txid": format!("use-{tag}"), "user_id": user, "amount": 50,
                   "reason": "insufficient points"}),
        ),
    ]
}

/// Every kind [`shopper_events`] makes.
pub const SHOPPER_KINDS: [&str; 8] = [
    "order.paid",
    "order.cancelled",
    "order.expired",
    "order.rejected",
    "payment.failed",
    "coupon.issued",
    "coupon.rejected",
    "points.rejected",
];

/// Waits until `check` holds, up to `within`; whether it did.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `path` of an operational port: the body, `None` when it does not answer.
pub async fn ops(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let request = Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .ok()?;
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of an unlabelled metric in a `/metrics` text (0 when absent).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
