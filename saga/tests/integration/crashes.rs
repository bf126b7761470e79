//! Several saga instances, and a saga killed mid-batch: no order is charged twice (the
//! provider's book is counted), none is left unfinished.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;

use flashgate_config::{PspSettings, Settings};

use crate::helpers::{Stack, eventually, psp_settings, stack_with, unique};

/// Buys one unit for each of `n` shoppers and pays it with `token_of(i)`: (order, token).
async fn buy_and_pay(
    stack: &Stack,
    sale_id: u64,
    n: usize,
    token_of: impl Fn(usize) -> &'static str,
) -> Vec<(String, &'static str)> {
    let mut orders = Vec::with_capacity(n);
    for i in 0..n {
        let user = unique("shopper");
        let order = stack.buy(sale_id, &user).await;
        stack.pay(&order, &user, token_of(i)).await;
        orders.push((order, token_of(i)));
    }
    orders
}

/// Waits until every order's payment is completed and announced (two minutes at most).
async fn all_completed(stack: &Stack, orders: &[(String, &'static str)]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for (order, _) in orders {
        loop {
            let row = stack.payment(order).await;
            if row
                .as_ref()
                .is_some_and(|r| r.status == "completed" && r.done)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "payment of {order} never completed: {row:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Every order holds exactly one successful charge.
fn one_charge_each(stack: &Stack, orders: &[(String, &'static str)]) {
    let counts: HashMap<&str, usize> = orders
        .iter()
        .map(|(order, _)| (order.as_str(), stack.psp.succeeded(order)))
        .collect();
    let wrong: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        wrong.is_empty(),
        "orders without exactly one charge: {wrong:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_saga_instances_on_one_topic_share_the_work_without_doing_a_step_twice() {
    let psp = PspSettings {
        latency_ms: 20,
        ..psp_settings()
    };
    let stack = stack_with(psp, |settings| settings.saga.concurrency = 8).await;
    let first = stack.start_saga().await;
    let second = stack.start_saga().await;
    let sale = stack.sale(40).await;

    let orders = buy_and_pay(&stack, sale, 40, |i| {
        if i % 4 == 0 { "tok_flaky" } else { "tok_ok" }
    })
    .await;

    all_completed(&stack, &orders).await;
    one_charge_each(&stack, &orders);
    // tok_ok: one charge call; tok_flaky: two 503s and the charge. A step done twice (by both
    // instances) would show as more.
    let attempts = first.metrics.attempts.load(Ordering::Relaxed)
        + second.metrics.attempts.load(Ordering::Relaxed);
    assert_eq!(attempts, 30 + 10 * 3);
    let completed = first.metrics.outcomes("completed") + second.metrics.outcomes("completed");
    assert_eq!(completed, 40);
    let outcomes = stack.outcomes(40);
    assert_eq!(outcomes.len(), 40, "one announcement per order");
    first.stop().await;
    second.stop().await;
}

/// The saga's binary on `settings`, everything passed as `FLASHGATE__...` variables (on top of
/// the stack's, inherited).
fn spawn_binary(settings: &Settings) -> Child {
    let saga = &settings.saga;
    Command::new(env!("CARGO_BIN_EXE_flashgate-saga"))
        .arg("run")
        .env("FLASHGATE__MYSQL__URL", settings.mysql.url.expose())
        .env("FLASHGATE__REDIS__KEY_PREFIX", &settings.redis.key_prefix)
        .env(
            "FLASHGATE__KAFKA__PAYMENTS_TOPIC",
            &settings.kafka.payments_topic,
        )
        .env(
            "FLASHGATE__KAFKA__ORDER_EVENTS_TOPIC",
            &settings.kafka.order_events_topic,
        )
        .env(
            "FLASHGATE__KAFKA__DEAD_LETTER_TOPIC",
            &settings.kafka.dead_letter_topic,
        )
        .env("FLASHGATE__PERSISTER__MIGRATE_ON_START", "false")
        // The killed member's partitions come back to the group after its session times out.
        .env("FLASHGATE__KAFKA__SESSION_TIMEOUT_MS", "6000")
        .env("FLASHGATE__SAGA__LISTEN", saga.listen.to_string())
        .env("FLASHGATE__SAGA__PROVIDER_URL", &saga.provider_url)
        .env(
            "FLASHGATE__SAGA__PROVIDER_TIMEOUT_MS",
            saga.provider_timeout_ms.to_string(),
        )
        .env("FLASHGATE__SAGA__CONSUMER_GROUP", &saga.consumer_group)
        .env("FLASHGATE__SAGA__CONCURRENCY", saga.concurrency.to_string())
        .env("FLASHGATE__SAGA__LEASE_MS", saga.lease_ms.to_string())
        .env(
            "FLASHGATE__SAGA__POLL_INTERVAL_MS",
            saga.poll_interval_ms.to_string(),
        )
        .env(
            "FLASHGATE__SAGA__RETRY_BASE_MS",
            saga.retry_base_ms.to_string(),
        )
        .env(
            "FLASHGATE__SAGA__RETRY_CAP_MS",
            saga.retry_cap_ms.to_string(),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("start flashgate-saga")
}

/// GET `path` of the saga's operational port: (status, body), `None` when it does not answer.
async fn ops(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saga_killed_mid_batch_and_restarted_charges_no_order_twice_and_leaves_none_stuck() {
    // Slow answers keep charges in flight when the kill comes; some are tok_slow (charged,
    // answer lost at the kill or to the timeout).
    let psp = PspSettings {
        latency_ms: 150,
        slow_ms: 2_000,
        ..psp_settings()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let stack = stack_with(psp, |settings| {
        settings.saga.listen = port;
        settings.saga.concurrency = 16;
        settings.saga.lease_ms = 2_000;
        settings.saga.provider_timeout_ms = 1_000;
    })
    .await;
    let sale = stack.sale(60).await;
    let orders = buy_and_pay(&stack, sale, 60, |i| {
        if i % 5 == 0 { "tok_slow" } else { "tok_ok" }
    })
    .await;

    let mut saga = spawn_binary(&stack.settings);
    assert!(
        eventually(|| async { ops(port, "/readyz").await.is_some_and(|(s, _)| s == 200) }).await,
        "the saga answers /readyz"
    );
    assert!(
        eventually(|| async { stack.psp.provider.charges().len() >= 10 }).await,
        "the saga is charging"
    );
    let (status, metrics) = ops(port, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("flashgate_saga_charge_attempts_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flashgate_saga_provider_call_duration_seconds_bucket"),
        "{metrics}"
    );
    saga.kill().expect("SIGKILL");
    let _ = saga.wait();
    let charged_at_kill = stack.psp.provider.charges().len();
    assert!(
        charged_at_kill < 60,
        "killed mid-batch ({charged_at_kill} of 60 charged)"
    );

    let mut again = spawn_binary(&stack.settings);
    all_completed(&stack, &orders).await;
    one_charge_each(&stack, &orders);
    assert_eq!(
        stack.psp.provider.charges().len(),
        60,
        "no second charge of any order"
    );
    let unfinished: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM payments WHERE next_at IS NOT NULL")
            .fetch_one(&stack.db)
            .await
            .expect("count");
    assert_eq!(unfinished, 0);
    for (order, _) in &orders {
        assert_eq!(stack.record(sale, order).await.0, "paid", "{order}");
    }
    // SIGTERM: a clean stop.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(again.id().to_string())
        .status();
    let stopped = tokio::task::spawn_blocking(move || again.wait())
        .await
        .expect("wait");
    assert!(stopped.expect("exit").success());
}
