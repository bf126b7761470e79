//! Test support for integration tests against the local stack (`scripts/stack.sh`): names no
//! other test uses, the stack's settings, a fresh database or topic per test, and a relay that
//! cuts one test's view of a server off (`relay.rs`), and this process's JSON log lines (`logs.rs`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashgate_config::{RateClass, RateKey, RateLimit, Secret, Settings, Sources};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sqlx::MySqlPool;

pub mod logs;
pub mod relay;

/// `prefix` followed by something no other test (or test run) uses; only `[A-Za-z0-9]` is
/// added, so the result is a valid database, topic or key name when `prefix` is.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}{}x{nanos}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The settings the binaries would use here: defaults (the local stack) overridden by
/// `FLASHGATE__...` variables when set. The environment is read, never written.
///
/// Rate limits: unless the environment sets `FLASHGATE__RATE_LIMITS`, every class gets
/// [`roomy_rate_limits`] (the defaults, 5 purchases a second per user, would refuse tests that
/// fire many requests as one user); a test of the limits sets its own.
pub fn stack_settings() -> Settings {
    let mut settings =
        Settings::load(&Sources::from_process(None)).expect("test configuration is valid");
    if settings.rate_limits.is_empty() {
        settings.rate_limits = roomy_rate_limits();
    }
    settings
}

/// Limits no test that does not test them reaches (100000/s, burst 100000, per user and per
/// address in every class), still judged on every request so that every test runs the limiter.
pub fn roomy_rate_limits() -> Vec<RateLimit> {
    RateClass::ALL
        .iter()
        .flat_map(|&class| {
            RateKey::ALL.map(|key| RateLimit {
                class,
                key,
                rate: 100_000,
                burst: Some(100_000),
            })
        })
        .collect()
}

/// Creates an empty database with a unique name, points `settings.mysql.url` at it and
/// returns a pool connected to it.
pub async fn fresh_database(settings: &mut Settings) -> MySqlPool {
    let admin = settings
        .mysql
        .connect()
        .await
        .expect("connect to MySQL of the local stack (is scripts/stack.sh up?)");
    let name = unique("flashgate_test_");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let url = settings.mysql.url.expose();
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    settings.mysql.url = Secret::new(format!("{base}/{name}"));
    settings
        .mysql
        .connect()
        .await
        .expect("connect to test database")
}

/// Drops a database made by [`fresh_database`].
pub async fn drop_database(pool: MySqlPool) {
    let name: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&pool)
        .await
        .expect("current database");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE `{name}`")))
        .execute(&pool)
        .await
        .expect("drop test database");
    pool.close().await;
}

/// Creates a topic of its own (`<prefix><unique>`) with `partitions` partitions.
///
/// Topics are never deleted: deleting topics while other clients produce has crashed the
/// storage of tansu 0.6 (see the broker notes in docs/operations.md).
pub async fn fresh_topic(settings: &Settings, prefix: &str, partitions: i32) -> String {
    let topic = unique(prefix);
    let admin: AdminClient<DefaultClientContext> = settings
        .kafka
        .admin_config()
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            [&NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topic (is scripts/stack.sh up?)");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    topic
}

/// Runs `scripts/stack.sh` with `args` (`stop mariadb`, `start redis-6390`, ...) and asserts
/// it succeeded. For tests that disrupt the shared stack (see `scripts/test.sh`).
pub fn stack(args: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh");
    let status = std::process::Command::new(script)
        .args(args)
        .status()
        .expect("run scripts/stack.sh");
    assert!(status.success(), "scripts/stack.sh {args:?} failed");
}

/// One message read back from a topic: key, payload, headers.
pub struct ReadMessage {
    /// The key, as text.
    pub key: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// Headers, as text.
    pub headers: std::collections::HashMap<String, String>,
}

/// Reads `topic` from the beginning with a consumer group of its own until `expected`
/// messages arrived or `within` passed, then keeps reading for `settle` (a duplicate would
/// show up there). Transient consumer errors (a broker restarting) are skipped. Blocking.
pub fn read_topic(
    settings: &Settings,
    topic: &str,
    expected: usize,
    within: Duration,
    settle: Duration,
) -> Vec<ReadMessage> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = settings
        .kafka
        .consumer_config(&unique("flashgate-test-reader-"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + within;
    let mut settle_until = None;
    loop {
        let now = std::time::Instant::now();
        match settle_until {
            None if out.len() >= expected || now >= deadline => settle_until = Some(now + settle),
            Some(until) if now >= until => break,
            _ => {}
        }
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(ReadMessage {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}
