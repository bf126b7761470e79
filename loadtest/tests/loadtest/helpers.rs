//! `spawn_stack()`: a gateway and a persister of this test alone (a fresh, migrated MySQL
//! database, its own Redis key prefix, orders topic and consumer group), and small options;
//! `spawn_paying_stack()` adds the virtual provider and the payment saga.

use std::sync::Arc;
use std::time::Duration;

use flashgate_config::{PspSettings, Secret, Settings};
use flashgate_gateway::startup::Application;
use flashgate_loadtest::options::{Mode, RunOptions, Scenario};
use flashgate_persister::consumer::Persister;
use flashgate_persister::metrics::Metrics;
use flashgate_testkit::{fresh_database, fresh_topic, unique};
use sqlx::MySqlPool;
use tokio::sync::{oneshot, watch};

/// The signing secret of the test gateway (the load test mints its tokens with it too).
const TEST_SECRET: &str = "loadtest-secret-loadtest-secret-42";

/// A running gateway and persister, and the settings the load test uses to reach them.
pub struct Stack {
    pub settings: Settings,
    pub db: MySqlPool,
    stop_gateway: Option<oneshot::Sender<()>>,
    stop_persister: watch::Sender<bool>,
}

/// The provider's latency in the paying stack: the (and the benchmark's) 20 ms.
pub const PSP_LATENCY_MS: u64 = 20;

/// Starts a gateway and a persister, isolated from every other test.
pub async fn spawn_stack() -> Stack {
    spawn(false).await
}

/// Starts a gateway, a persister, the virtual provider (its latency [`PSP_LATENCY_MS`]) and
/// the payment saga, all in this process, isolated from every other test (fresh payments and
/// dead-letter topics, the saga's own consumer group).
pub async fn spawn_paying_stack() -> Stack {
    spawn(true).await
}

async fn spawn(payments: bool) -> Stack {
    let mut settings = flashgate_testkit::stack_settings();
    settings.gateway.jwt.secret = Some(Secret::new(TEST_SECRET));
    settings.gateway.listen = "127.0.0.1:0".parse().expect("addr");
    settings.redis.key_prefix = unique("fglt");
    let db = fresh_database(&mut settings).await;
    flashgate_persister::db::migrate(&db)
        .await
        .expect("migrate");
    settings.kafka.orders_topic = fresh_topic(&settings, "flashgate.test-orders-", 2).await;
    settings.kafka.coupons_topic = fresh_topic(&settings, "flashgate.test-coupons-", 2).await;
    settings.kafka.points_topic = fresh_topic(&settings, "flashgate.test-points-", 2).await;
    settings.kafka.order_events_topic =
        fresh_topic(&settings, "flashgate.test-order-events-", 2).await;
    settings.kafka.consumer_group = unique("flashgate-test-persister-");
    settings.persister.max_wait_ms = 20;
    if payments {
        settings.kafka.payments_topic = fresh_topic(&settings, "flashgate.test-payments-", 2).await;
        settings.kafka.dead_letter_topic =
            fresh_topic(&settings, "flashgate.test-dead-letter-", 1).await;
    }

    let application = Application::build(settings.clone())
        .await
        .expect("gateway builds");
    settings.gateway.listen = application.local_addr();
    let (stop_gateway, stopped) = oneshot::channel::<()>();
    tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    let persister = Persister::new(settings.clone(), db.clone(), Arc::new(Metrics::default()))
        .await
        .expect("persister");
    let (stop_persister, stopped) = watch::channel(false);
    tokio::spawn(persister.run(stopped.clone()));
    if payments {
        start_payments(&mut settings, stopped).await;
    }
    Stack {
        settings,
        db,
        stop_gateway: Some(stop_gateway),
        stop_persister,
    }
}

/// Serves the virtual provider and runs the saga until `stop` turns true; points `settings` at
/// them.
async fn start_payments(settings: &mut Settings, stop: watch::Receiver<bool>) {
    let until = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the provider");
    let psp = PspSettings {
        listen: listener.local_addr().expect("provider's address"),
        latency_ms: PSP_LATENCY_MS,
        ..PspSettings::default()
    };
    settings.saga.provider_url = format!("http://{}", psp.listen);
    tokio::spawn(flashgate_psp::serve(
        flashgate_psp::Provider::new(),
        listener,
        psp,
        until(stop.clone()),
    ));
    settings.saga.listen = "127.0.0.1:0".parse().expect("addr");
    settings.saga.consumer_group = unique("flashgate-test-saga-");
    settings.persister.migrate_on_start = false;
    let saga = flashgate_saga::startup::Saga::build(settings.clone())
        .await
        .expect("saga builds");
    tokio::spawn(saga.run_until(until(stop)));
}

/// A second gateway over the stack's Redis, MySQL and topics (`--twin`); stopped when dropped.
pub struct Twin {
    pub url: String,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Stack {
    /// Starts a twin of the stack's gateway.
    pub async fn twin(&self) -> Twin {
        let mut settings = self.settings.clone();
        settings.gateway.listen = "127.0.0.1:0".parse().expect("addr");
        let application = Application::build(settings).await.expect("twin builds");
        let addr = application.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(application.run_until(async {
            let _ = stopped.await;
        }));
        Twin {
            url: format!("http://{addr}"),
            addr,
            stop: Some(stop),
        }
    }
}

impl Twin {
    /// The sum of the twin's `flashgate_http_requests_total` for `route`, read from its
    /// `/metrics`.
    pub async fn requests(&self, route: &str) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the twin");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: twin\r\nConnection: close\r\n\r\n")
            .await
            .expect("ask for the metrics");
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .await
            .expect("read the metrics");
        let prefix = format!("flashgate_http_requests_total{{route=\"{route}\",");
        text.lines()
            .filter(|line| line.starts_with(&prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_gateway.take() {
            let _ = stop.send(());
        }
        let _ = self.stop_persister.send(true);
    }
}

/// Options of a small, quick run of `scenario`: open loop at 1,000 requests/s over 16
/// connections, `shoppers` shoppers, `stock` units, the report in a temporary file.
pub fn small(scenario: Scenario, shoppers: u32, stock: u32) -> RunOptions {
    let mut options = RunOptions::new(scenario);
    options.mode = Mode::Open;
    options.rate = 1_000;
    options.connections = 16;
    options.shoppers = shoppers;
    options.stock = stock;
    options.duration = Duration::from_secs(5);
    options.open_in = Duration::from_secs(1);
    options.drain_timeout = Duration::from_secs(60);
    options.json = std::env::temp_dir().join(format!("{}.json", unique("flashgate-loadtest-")));
    options.quiet = true;
    options
}
