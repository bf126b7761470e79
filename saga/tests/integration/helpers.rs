//! `stack()`: everything a payment goes through, on the local stack, isolated per test — a
//! gateway in this process (a fresh MySQL database, its own Redis key prefix and topics, the
//! payments topic among them), the virtual provider in this process (its book kept across a
//! restart on the same port), and the saga, in this process or as the real binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flashgate_config::{PspSettings, Secret, Settings};
use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::SaleKeys;
use flashgate_gateway::startup::Application;
use flashgate_gateway::token::Minter;
use flashgate_psp::Provider;
use flashgate_saga::metrics::Metrics;
use flashgate_saga::startup::Saga;
pub use flashgate_testkit::unique;
use fred::prelude::{HashesInterface, KeysInterface, Pool};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sqlx::{MySqlPool, Row};
use tokio::sync::oneshot;

/// The signing secret of every test gateway.
const TEST_SECRET: &str = "test-secret-test-secret-test-secret-42";

/// How long a test waits for a payment to end.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The virtual provider, served in this process.
pub struct Psp {
    /// Its book: charges and refunds, kept across [`Psp::stop`] and [`Psp::start`].
    pub provider: Provider,
    /// The port it serves on (the same after a restart).
    pub addr: SocketAddr,
    /// Latency, slow_ms, failure share.
    pub settings: PspSettings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Psp {
    /// A new, empty provider on a free port.
    pub async fn spawn(settings: PspSettings) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut psp = Self {
            provider: Provider::new(),
            addr,
            settings,
            stop: None,
            task: None,
        };
        psp.serve(listener);
        psp
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(flashgate_psp::serve(
            self.provider.clone(),
            listener,
            self.settings.clone(),
            async {
                let _ = stopped.await;
            },
        )));
    }

    /// Stops serving (the port refuses connections: an outage); the book is kept.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves the same book on the same port again.
    pub async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the provider's port again");
        self.serve(listener);
    }

    /// The charges that succeeded for `order_id` (refunded ones included).
    pub fn succeeded(&self, order_id: &str) -> usize {
        self.provider
            .charges_for(order_id)
            .iter()
            .filter(|c| c.succeeded())
            .count()
    }

    /// The refunds of `order_id`'s charges.
    pub fn refunds(&self, order_id: &str) -> usize {
        let charges: Vec<String> = self
            .provider
            .charges_for(order_id)
            .into_iter()
            .map(|c| c.id)
            .collect();
        self.provider
            .refunds()
            .iter()
            .filter(|r| charges.contains(&r.charge))
            .count()
    }
}

impl Drop for Psp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A gateway, a provider and what a test needs to look behind them; no saga yet.
pub struct Stack {
    /// The settings every process of this test shares (a saga's own are derived from them).
    pub settings: Settings,
    /// This test's database.
    pub db: MySqlPool,
    /// The stack's Redis.
    pub redis: Pool,
    /// The provider.
    pub psp: Psp,
    gateway: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    minter: Minter,
    stop_gateway: Option<oneshot::Sender<()>>,
}

/// A response: status and JSON body.
pub struct Reply {
    pub status: StatusCode,
    pub json: Value,
}

/// The provider's settings of most tests: fast, `tok_slow` answering after 3 s.
pub fn psp_settings() -> PspSettings {
    PspSettings {
        latency_ms: 2,
        slow_ms: 3_000,
        ..PspSettings::default()
    }
}

/// A stack whose settings `adjust` may change first (the saga's among them).
pub async fn stack_with(psp: PspSettings, adjust: impl FnOnce(&mut Settings)) -> Stack {
    let mut settings = flashgate_testkit::stack_settings();
    settings.gateway.jwt.secret = Some(Secret::new(TEST_SECRET));
    settings.gateway.listen = "127.0.0.1:0".parse().expect("addr");
    settings.redis.key_prefix = unique("fgs");
    let db = flashgate_testkit::fresh_database(&mut settings).await;
    flashgate_persister::db::migrate(&db)
        .await
        .expect("migrate");
    let fresh = |prefix: &'static str| flashgate_testkit::fresh_topic(&settings, prefix, 2);
    let topics = (
        fresh("flashgate.test-orders-").await,
        fresh("flashgate.test-coupons-").await,
        fresh("flashgate.test-points-").await,
        fresh("flashgate.test-payments-").await,
        fresh("flashgate.test-order-events-").await,
        fresh("flashgate.test-dead-letter-").await,
    );
    (
        settings.kafka.orders_topic,
        settings.kafka.coupons_topic,
        settings.kafka.points_topic,
        settings.kafka.payments_topic,
        settings.kafka.order_events_topic,
        settings.kafka.dead_letter_topic,
    ) = topics;
    let psp = Psp::spawn(psp).await;
    settings.saga.provider_url = format!("http://{}", psp.addr);
    settings.saga.listen = "127.0.0.1:0".parse().expect("addr");
    settings.saga.consumer_group = unique("flashgate-test-saga-");
    settings.saga.provider_timeout_ms = 1_000;
    settings.saga.lease_ms = 3_000;
    settings.saga.retry_base_ms = 50;
    settings.saga.retry_cap_ms = 500;
    settings.saga.poll_interval_ms = 50;
    settings.persister.migrate_on_start = false;
    adjust(&mut settings);
    let application = Application::build(settings.clone())
        .await
        .expect("gateway builds");
    let gateway = application.local_addr();
    let (stop_gateway, stopped) = oneshot::channel::<()>();
    tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    let redis = settings.redis.connect_pool().await.expect("Redis");
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let minter = Minter::from_settings(&settings.gateway.jwt).expect("minter");
    Stack {
        settings,
        db,
        redis,
        psp,
        gateway,
        client,
        minter,
        stop_gateway: Some(stop_gateway),
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_gateway.take() {
            let _ = stop.send(());
        }
    }
}

impl Stack {
    /// The gateway's address (its `/metrics` among the rest).
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway
    }

    /// Sends a request to the gateway as `user` with `role`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        user: &str,
        role: Role,
        body: Option<Value>,
    ) -> Reply {
        let token = self
            .minter
            .mint(user, &[role], Duration::from_secs(3600))
            .expect("mint");
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.gateway))
            .header("authorization", format!("Bearer {token}"));
        let bytes = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let response = self
            .client
            .request(builder.body(Full::new(bytes)).expect("request"))
            .await
            .expect("gateway answers");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// A sale open now for an hour with `stock` units at 19.99, one per shopper.
    pub async fn sale(&self, stock: u32) -> u64 {
        let body = json!({
            "sku": "SKU-PAY",
            "title": "Payment test sale",
            "price": 1999,
            "stock": stock,
            "per_user_limit": 1,
            "starts_at": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
            "ends_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        });
        let reply = self
            .request(
                Method::POST,
                "/v1/admin/sales",
                "manager-1",
                Role::Manager,
                Some(body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
        reply.json["sale_id"].as_u64().expect("sale_id")
    }

    /// Buys one unit of `sale_id` as `user`: the order id.
    pub async fn buy(&self, sale_id: u64, user: &str) -> String {
        let reply = self.purchase(sale_id, user).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
        reply.json["order_id"]
            .as_str()
            .expect("order_id")
            .to_owned()
    }

    /// `POST /v1/sales/{id}/purchases` of one unit as `user`.
    pub async fn purchase(&self, sale_id: u64, user: &str) -> Reply {
        self.request(
            Method::POST,
            &format!("/v1/sales/{sale_id}/purchases"),
            user,
            Role::Shopper,
            Some(json!({"quantity": 1})),
        )
        .await
    }

    /// `POST /v1/orders/{id}/payment` with `token`, asserting the 202.
    pub async fn pay(&self, order_id: &str, user: &str, token: &str) {
        let reply = self
            .request(
                Method::POST,
                &format!("/v1/orders/{order_id}/payment"),
                user,
                Role::Shopper,
                Some(json!({"payment_token": token})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    }

    /// `POST /v1/orders/{id}/cancel` as its shopper.
    pub async fn cancel(&self, order_id: &str, user: &str) -> Reply {
        self.request(
            Method::POST,
            &format!("/v1/orders/{order_id}/cancel"),
            user,
            Role::Shopper,
            Some(json!({})),
        )
        .await
    }

    /// `GET /v1/orders/{id}` as its shopper.
    pub async fn order(&self, order_id: &str, user: &str) -> Reply {
        self.request(
            Method::GET,
            &format!("/v1/orders/{order_id}"),
            user,
            Role::Shopper,
            None,
        )
        .await
    }

    /// The order's record in Redis: (state, reason).
    pub async fn record(&self, sale_id: u64, order_id: &str) -> (String, String) {
        let keys = SaleKeys::new(&self.settings.redis.key_prefix, sale_id);
        let record: Option<String> = self
            .redis
            .hget(&keys.orders, order_id)
            .await
            .expect("record");
        let record = record.unwrap_or_default();
        let fields: Vec<&str> = record.split('\n').collect();
        (
            fields.get(4).copied().unwrap_or_default().to_owned(),
            fields.get(6).copied().unwrap_or_default().to_owned(),
        )
    }

    /// Units left in Redis.
    pub async fn stock(&self, sale_id: u64) -> i64 {
        let keys = SaleKeys::new(&self.settings.redis.key_prefix, sale_id);
        let stock: Option<i64> = self.redis.get(&keys.stock).await.expect("stock");
        stock.unwrap_or_default()
    }

    /// The payment's row: (status, attempts, failure_code, refund_reason).
    pub async fn payment(&self, order_id: &str) -> Option<PaymentRow> {
        let row = sqlx::query(
            "SELECT status, attempts, failure_code, refund_reason, provider_ref, refund_ref, \
             next_at IS NULL AS done FROM payments WHERE order_id = ?",
        )
        .bind(order_id)
        .fetch_optional(&self.db)
        .await
        .expect("payment row")?;
        Some(PaymentRow {
            status: row.get("status"),
            attempts: row.get("attempts"),
            failure_code: row.get("failure_code"),
            refund_reason: row.get("refund_reason"),
            provider_ref: row.get("provider_ref"),
            refund_ref: row.get("refund_ref"),
            done: row.get::<i64, _>("done") != 0,
        })
    }

    /// Waits until the payment of `order_id` is `status` with nothing left to do (its outcome
    /// announced); panics after [`PATIENCE`].
    pub async fn settled(&self, order_id: &str, status: &str) -> PaymentRow {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let row = self.payment(order_id).await;
            if let Some(row) = &row
                && row.status == status
                && row.done
            {
                return row.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "payment of {order_id} never settled {status}: {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A saga in this process on these settings.
    pub async fn start_saga(&self) -> RunningSaga {
        RunningSaga::start(self.settings.clone()).await
    }

    /// The saga's events on the lifecycle topic (key, type), read until `expected` came or
    /// 20 s passed, then 2 s more.
    pub fn outcomes(&self, expected: usize) -> Vec<(String, String, Value)> {
        flashgate_testkit::read_topic(
            &self.settings,
            &self.settings.kafka.order_events_topic,
            expected,
            Duration::from_secs(20),
            Duration::from_secs(2),
        )
        .into_iter()
        .filter_map(|m| {
            let json: Value = serde_json::from_slice(&m.payload).ok()?;
            let kind = json["type"].as_str()?.to_owned();
            kind.starts_with("payment.").then_some((m.key, kind, json))
        })
        .collect()
    }
}

/// A payment's row, as a test reads it.
#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub status: String,
    pub attempts: u32,
    pub failure_code: Option<String>,
    pub refund_reason: Option<String>,
    pub provider_ref: Option<String>,
    pub refund_ref: Option<String>,
    /// Nothing left to do (`next_at` null).
    pub done: bool,
}

/// A saga running in this process for one test.
pub struct RunningSaga {
    /// Its counters.
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningSaga {
    /// Builds and runs a saga on `settings`.
    pub async fn start(settings: Settings) -> Self {
        let saga = Saga::build(settings).await.expect("saga builds");
        let metrics = saga.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(saga.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops it gracefully and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("saga task").expect("clean stop");
        }
    }
}

impl Drop for RunningSaga {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `check` until it holds or [`PATIENCE`] passed; returns whether it held.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

impl Stack {
    /// `POST /v1/orders/{id}/payment` with `token`, sent with a W3C `traceparent`, asserting
    /// the 202.
    pub async fn pay_traced(&self, order_id: &str, user: &str, token: &str, traceparent: &str) {
        let bearer = self
            .minter
            .mint(user, &[Role::Shopper], Duration::from_secs(3600))
            .expect("mint");
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "http://{}/v1/orders/{order_id}/payment",
                self.gateway
            ))
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .header("traceparent", traceparent)
            .body(Full::new(Bytes::from(
                json!({"payment_token": token}).to_string(),
            )))
            .expect("request");
        let response = self.client.request(request).await.expect("gateway answers");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
}

/// A payment request of ann's for `order_id` of `sale_id`, paid with `tok_ok`, made now with
/// ten minutes to pay.
pub fn payment_request(
    order_id: &str,
    sale_id: u64,
    amount: u64,
) -> flashgate_events::PaymentRequested {
    let now = chrono::Utc::now();
    flashgate_events::PaymentRequested {
        order_id: order_id.to_owned(),
        sale_id,
        user_id: "ann".to_owned(),
        amount,
        payment_token: "tok_ok".to_owned(),
        pay_by: now + chrono::Duration::minutes(10),
        give_up_at: now + chrono::Duration::minutes(11),
        requested_at: now,
    }
}

/// Stores a payment request for `order_id` as the intake does (sale 7, 1,990, see
/// [`payment_request`]): true when it was new.
pub async fn store_request(db: &MySqlPool, order_id: &str) -> bool {
    let request = payment_request(order_id, 7, 1_990);
    let mut conn = db.acquire().await.expect("connection");
    flashgate_saga::requests::store_payment(&mut conn, &request, "t")
        .await
        .expect("stored")
}
