//! `spawn_app()`: a gateway on a free port, isolated by a fresh MySQL database, its own Redis
//! key prefix and its own orders, coupons and points topics; and a handle with one method per endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flashgate_config::{Secret, Settings};
use flashgate_gateway::auth::Role;
use flashgate_gateway::startup::Application;
use flashgate_gateway::token::Minter;
use flashgate_persister::consumer::Persister;
use flashgate_persister::metrics::Metrics as PersisterMetrics;
pub use flashgate_testkit::unique;
use fred::prelude::{ClientLike, HashesInterface, Pool, SortedSetsInterface};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sqlx::MySqlPool;
use tokio::sync::{oneshot, watch};

/// The signing secret of every test gateway.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-42";

/// Settings of the local stack with the test signing key and a free port.
pub fn stack_settings() -> Settings {
    let mut settings = flashgate_testkit::stack_settings();
    settings.gateway.jwt.secret = Some(Secret::new(TEST_SECRET));
    settings.gateway.listen = "127.0.0.1:0".parse().expect("addr");
    settings
}

/// A fresh database with the schema; `settings` now points at it.
pub async fn fresh_database(settings: &mut Settings) -> MySqlPool {
    let pool = flashgate_testkit::fresh_database(settings).await;
    flashgate_persister::db::migrate(&pool)
        .await
        .expect("migrate");
    pool
}

/// A fresh orders topic of this test alone.
pub async fn fresh_topic(settings: &Settings, partitions: i32) -> String {
    flashgate_testkit::fresh_topic(settings, "flashgate.test-orders-", partitions).await
}

/// A running gateway and what a test needs to talk to it and look behind it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub settings: Settings,
    pub db: MySqlPool,
    pub redis: Pool,
    /// The gateway's shared state, to look behind it.
    pub state: Arc<flashgate_gateway::app::App>,
    client: Client<HttpConnector, Full<Bytes>>,
    minter: Minter,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A response: status, headers, raw body, and the body as JSON when it is JSON.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Bytes,
    pub json: Value,
}

impl Reply {
    /// `error.code` of an error response.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }
}

/// A gateway on the local stack, isolated from every other test.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with a chance to change the settings first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = stack_settings();
    settings.redis.key_prefix = unique("fgt");
    let db = fresh_database(&mut settings).await;
    settings.kafka.orders_topic = fresh_topic(&settings, 2).await;
    settings.kafka.coupons_topic =
        flashgate_testkit::fresh_topic(&settings, "flashgate.test-coupons-", 2).await;
    settings.kafka.points_topic =
        flashgate_testkit::fresh_topic(&settings, "flashgate.test-points-", 2).await;
    adjust(&mut settings);
    start(settings, db).await
}

/// Starts a gateway with exactly these settings.
pub async fn start(settings: Settings, db: MySqlPool) -> TestApp {
    let application = Application::build(settings.clone())
        .await
        .expect("gateway builds");
    let addr = application.local_addr();
    let state = application.app();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async {
        let _ = stop.await;
    }));
    let redis = settings.redis.connect_pool().await.expect("Redis");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let minter = Minter::from_settings(&settings.gateway.jwt).expect("minter");
    TestApp {
        addr,
        settings,
        db,
        redis,
        state,
        client,
        minter,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    /// A token for `user` with `role`, valid for an hour.
    pub fn token(&self, user: &str, role: Role) -> String {
        self.minter
            .mint(user, &[role], Duration::from_secs(3600))
            .expect("mint")
    }

    /// Sends a request; `body` is sent as JSON unless it is a string (sent as is).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let has_content_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let bytes = match body {
            Some(Value::String(raw)) => Bytes::from(raw),
            Some(value) => Bytes::from(value.to_string()),
            None => Bytes::new(),
        };
        if !bytes.is_empty() && !has_content_type {
            builder = builder.header("content-type", "application/json");
        }
        let response = self
            .client
            .request(builder.body(Full::new(bytes)).expect("request"))
            .await
            .expect("gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            bytes,
            json,
        }
    }

    /// `POST /v1/admin/sales` as a manager; `overrides` replace fields of a valid sale that
    /// is open now for an hour.
    pub async fn create_sale(&self, overrides: Value) -> Reply {
        let mut body = json!({
            "sku": "SKU-TEST",
            "title": "Test sale",
            "price": 1999,
            "stock": 10,
            "per_user_limit": 1,
            "starts_at": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
            "ends_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut body, overrides) {
            base.extend(extra);
        }
        let token = self.token("manager-1", Role::Manager);
        self.request(
            Method::POST,
            "/v1/admin/sales",
            Some(&token),
            &[],
            Some(body),
        )
        .await
    }

    /// Creates a sale and returns its id (panics if the gateway refuses).
    pub async fn sale(&self, overrides: Value) -> u64 {
        let reply = self.create_sale(overrides).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
        reply.json["sale_id"].as_u64().expect("sale_id")
    }

    /// `POST /v1/sales/{id}/purchases` as `user` (a shopper).
    pub async fn purchase(&self, sale_id: u64, user: &str, quantity: u32) -> Reply {
        self.purchase_with(sale_id, user, json!({ "quantity": quantity }), &[])
            .await
    }

    /// A purchase with a chosen body and extra headers.
    pub async fn purchase_with(
        &self,
        sale_id: u64,
        user: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let token = self.token(user, Role::Shopper);
        self.request(
            Method::POST,
            &format!("/v1/sales/{sale_id}/purchases"),
            Some(&token),
            headers,
            Some(body),
        )
        .await
    }

    /// The value of the `/metrics` series whose line starts with `series` (its name and
    /// labels, then a space), if the gateway shows it.
    pub async fn metric(&self, series: &str) -> Option<u64> {
        let metrics = self.request(Method::GET, "/metrics", None, &[], None).await;
        std::str::from_utf8(&metrics.bytes)
            .expect("text")
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
    }

    /// `GET /v1/admin/sales/{id}` as a manager.
    pub async fn get_sale(&self, sale_id: u64) -> Reply {
        let token = self.token("manager-1", Role::Manager);
        self.request(
            Method::GET,
            &format!("/v1/admin/sales/{sale_id}"),
            Some(&token),
            &[],
            None,
        )
        .await
    }

    /// `POST /v1/admin/coupon-policies` as a manager; `overrides` replace fields of a valid
    /// policy (10% off, 10 coupons, one each, claimable now for an hour, valid a day).
    pub async fn create_policy(&self, overrides: Value) -> Reply {
        let mut body = json!({
            "name": "Test coupons",
            "discount": {"kind": "percent", "value": 10},
            "total_quantity": 10,
            "claim_starts_at": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
            "claim_ends_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            "valid_for_seconds": 86_400,
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut body, overrides) {
            base.extend(extra);
            base.retain(|_, v| !v.is_null());
        }
        let token = self.token("manager-1", Role::Manager);
        self.request(
            Method::POST,
            "/v1/admin/coupon-policies",
            Some(&token),
            &[],
            Some(body),
        )
        .await
    }

    /// Creates a policy and returns its id (panics if the gateway refuses).
    pub async fn policy(&self, overrides: Value) -> u64 {
        let reply = self.create_policy(overrides).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
        reply.json["policy_id"].as_u64().expect("policy_id")
    }

    /// `GET /v1/admin/coupon-policies/{id}` as a manager.
    pub async fn get_policy(&self, policy_id: u64) -> Reply {
        let token = self.token("manager-1", Role::Manager);
        self.request(
            Method::GET,
            &format!("/v1/admin/coupon-policies/{policy_id}"),
            Some(&token),
            &[],
            None,
        )
        .await
    }

    /// `POST /v1/coupon-policies/{id}/claims` as `user` (a shopper), with extra headers.
    pub async fn claim(&self, policy_id: u64, user: &str, headers: &[(&str, &str)]) -> Reply {
        let token = self.token(user, Role::Shopper);
        self.request(
            Method::POST,
            &format!("/v1/coupon-policies/{policy_id}/claims"),
            Some(&token),
            headers,
            None,
        )
        .await
    }

    /// `POST /v1/coupons/{id}/{action}` as `user`, `action` being `redeem` or
    /// `cancel-redemption`.
    pub async fn coupon_action(
        &self,
        coupon_id: &str,
        action: &str,
        user: &str,
        body: Option<Value>,
    ) -> Reply {
        let token = self.token(user, Role::Shopper);
        self.request(
            Method::POST,
            &format!("/v1/coupons/{coupon_id}/{action}"),
            Some(&token),
            &[],
            body,
        )
        .await
    }

    /// A persister of this test's database and topics, in this process.
    pub async fn start_persister(&self) -> RunningPersister {
        let mut settings = self.settings.clone();
        settings.kafka.consumer_group = unique("flashgate-test-persister-");
        let metrics = Arc::new(PersisterMetrics::default());
        let persister = Persister::new(settings, self.db.clone(), metrics.clone())
            .await
            .expect("persister");
        let (stop, stopped) = watch::channel(false);
        RunningPersister {
            metrics,
            stop,
            task: tokio::spawn(persister.run(stopped)),
        }
    }

    /// Waits until `persister` has consumed every message now on this gateway's orders, coupons
    /// and points topics (a minute at most): after it, nothing on its way can still change
    /// MySQL.
    pub async fn wait_until_consumed_all(&self, persister: &RunningPersister) {
        let settings = self.settings.clone();
        let produced = tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer as _;
            let consumer: rdkafka::consumer::BaseConsumer = settings
                .kafka
                .consumer_config("flashgate-test-watermarks")
                .create()
                .expect("consumer");
            let mut total = 0i64;
            for topic in [
                &settings.kafka.orders_topic,
                &settings.kafka.coupons_topic,
                &settings.kafka.points_topic,
            ] {
                let metadata = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
                    .expect("metadata");
                for partition in metadata.topics()[0].partitions() {
                    let (low, high) = consumer
                        .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                        .expect("watermarks");
                    total += high - low;
                }
            }
            u64::try_from(total).unwrap_or_default()
        })
        .await
        .expect("watermarks task");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // `batch_messages` counts what was written and committed, and `refused_by_database`
        // a message the database refused alone (dead-lettered); `consumed` counts a batch as
        // soon as it is taken, before its transaction.
        let written = || {
            let metrics = &persister.metrics;
            metrics
                .batch_messages
                .load(std::sync::atomic::Ordering::Relaxed)
                + metrics
                    .refused_by_database
                    .load(std::sync::atomic::Ordering::Relaxed)
        };
        while written() < produced {
            assert!(
                std::time::Instant::now() < deadline,
                "the persister never wrote all {produced} messages"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `sql` (one integer) until it equals `expected` or a minute passed; returns the
    /// last value.
    pub async fn wait_for_count(&self, sql: &str, expected: i64) -> i64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&self.db)
                .await
                .expect("count query");
            if count == expected || std::time::Instant::now() > deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Gives `user` `points` in MySQL, as an operator's adjustment would (a ledger row and the
    /// balance row at version 1).
    pub async fn grant_points(&self, user: &str, points: i64) {
        sqlx::query(
            "INSERT INTO point_ledger (txid, user_id, delta, reason) VALUES (?, ?, ?, 'adjust')",
        )
        .bind(format!("adjust-{user}"))
        .bind(user)
        .bind(points)
        .execute(&self.db)
        .await
        .expect("ledger row");
        sqlx::query("INSERT INTO point_balances (user_id, balance, version) VALUES (?, ?, 1)")
            .bind(user)
            .bind(points)
            .execute(&self.db)
            .await
            .expect("balance row");
    }

    /// Stops the gateway gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("clean shutdown");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A persister running in this process for one test.
pub struct RunningPersister {
    /// Its counters (what its `/metrics` would show).
    pub metrics: Arc<PersisterMetrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningPersister {
    /// Stops it after the batch in hand and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task
            .await
            .expect("persister task")
            .expect("clean stop");
    }
}

/// Reads `topic` from the beginning until `expected` messages arrived or `within` passed,
/// then 2 s more (a duplicate would show up); returns (key, JSON payload, headers).
pub fn consume_all(
    settings: &Settings,
    topic: &str,
    expected: usize,
    within: Duration,
) -> Vec<(String, Value, HashMap<String, String>)> {
    flashgate_testkit::read_topic(settings, topic, expected, within, Duration::from_secs(2))
        .into_iter()
        .map(|m| {
            let payload = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            (m.key, payload, m.headers)
        })
        .collect()
}

/// Redis's clock, in milliseconds (windows are judged by it, not by this machine's clock).
pub async fn redis_now_ms(app: &TestApp) -> i64 {
    let (secs, micros): (i64, i64) = app
        .redis
        .next()
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await
        .expect("TIME");
    secs * 1000 + micros / 1000
}

/// `GET /v1/me/points` as `user`: the balance the shopper sees.
pub async fn points_balance(app: &TestApp, user: &str) -> i64 {
    let token = app.token(user, Role::Shopper);
    let reply = app
        .request(Method::GET, "/v1/me/points", Some(&token), &[], None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    reply.json["balance"].as_i64().expect("balance")
}

/// `POST /v1/me/points/use/{txid}/cancel` as `user`.
pub async fn cancel_use(app: &TestApp, user: &str, txid: &str) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::POST,
        &format!("/v1/me/points/use/{txid}/cancel"),
        Some(&token),
        &[],
        None,
    )
    .await
}

/// Polls until `check` holds or 30 s passed; returns whether it held.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A sale's counters in Redis, read in one step (one script) so that an order ending between
/// two reads cannot make them look inconsistent: `(stock, held, paid, total)`. At every moment
/// `stock + held + paid = total`, all of them ≥ 0.
pub async fn sale_counters(app: &TestApp, sale_id: u64) -> (i64, i64, i64, i64) {
    let keys = flashgate_gateway::keys::SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let read: Vec<Option<i64>> = app
        .redis
        .next()
        .custom(
            fred::cmd!("EVAL"),
            vec![
                "return {redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], 'held'), \
                 redis.call('HGET', KEYS[2], 'paid'), redis.call('HGET', KEYS[2], 'total')}"
                    .to_owned(),
                "2".to_owned(),
                keys.stock,
                keys.sale,
            ],
        )
        .await
        .expect("counters");
    let at = |i: usize| read.get(i).copied().flatten().unwrap_or(0);
    (at(0), at(1), at(2), at(3))
}

/// The shoppers' counts in a sale's buyers hash (or a policy's holders hash): user id → units.
/// The rate limits' TATs live in the same hash under fields no user id can have
/// (`keys::rate_limit_field`); they are left out.
pub async fn shopper_counts(app: &TestApp, key: &str) -> HashMap<String, i64> {
    let fields: HashMap<Bytes, Bytes> = app.redis.hgetall(key).await.expect("HGETALL");
    fields
        .into_iter()
        .filter(|(field, _)| !flashgate_gateway::keys::is_rate_limit_field(field))
        .map(|(field, units)| {
            let user = String::from_utf8(field.to_vec()).expect("a user id is UTF-8");
            let units = std::str::from_utf8(&units)
                .ok()
                .and_then(|units| units.parse().ok())
                .expect("units are an integer");
            (user, units)
        })
        .collect()
}

/// The order id an orders-topic message is about (its envelope's data): messages are keyed by
/// sale, so a sale's admissions and ends stay in one partition, in order.
pub fn order_of_message(message: &(String, Value, HashMap<String, String>)) -> String {
    message.1["data"]["order_id"]
        .as_str()
        .expect("order_id in the message")
        .to_owned()
}

/// Moves an open order's `pay_by` to Redis's now (its record and its place in `holds`), as if
/// its payment window had just run out.
pub async fn run_out_window(app: &TestApp, sale_id: u64, order_id: &str) {
    let keys = flashgate_gateway::keys::SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let record: String = app
        .redis
        .hget(&keys.orders, order_id)
        .await
        .expect("record");
    let mut lines: Vec<String> = record.split('\n').map(str::to_owned).collect();
    let now = redis_now_ms(app).await - 1;
    lines[3] = now.to_string();
    let _: () = app
        .redis
        .hset(&keys.orders, (order_id, lines.join("\n")))
        .await
        .expect("record");
    let _: () = app
        .redis
        .zadd(
            &keys.holds,
            None,
            None,
            false,
            false,
            (now as f64, order_id),
        )
        .await
        .expect("hold");
}
