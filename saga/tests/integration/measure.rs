//! Not a test: a measurement, run by hand (`--run-ignored only measure::`). The payments are
//! asked for while no saga runs (the gateway is not what is measured), then one saga is
//! started and works the backlog: it prints how fast, and how long each payment took from its
//! row to charged and to completed and announced, with the provider at 20 ms. It asserts only
//! that every payment completed with one charge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_config::PspSettings;
use sqlx::Row;

use crate::helpers::{psp_settings, stack_with, unique};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, run by hand"]
async fn measure_payments_from_request_to_completed() {
    let total: usize = std::env::var("SAGA_MEASURE_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let psp = PspSettings {
        latency_ms: 20,
        ..psp_settings()
    };
    let stack = Arc::new(stack_with(psp, |_| {}).await);
    let sale = stack.sale(u32::try_from(total).expect("stock")).await;
    let mut orders = Vec::with_capacity(total);
    for _ in 0..total {
        let user = unique("m");
        orders.push((stack.buy(sale, &user).await, user));
    }

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in orders.chunks(total.div_ceil(32)) {
        let (stack, chunk) = (stack.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for (order, user) in chunk {
                stack.pay(&order, &user, "tok_ok").await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let paid_in = started.elapsed();
    // Every request relayed to the payments topic before the saga starts.
    let settings = stack.settings.clone();
    let relayed = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &settings.kafka.payments_topic,
            total,
            Duration::from_secs(120),
            Duration::from_millis(10),
        )
        .len()
    })
    .await
    .expect("reader");
    assert_eq!(relayed, total);
    let started = Instant::now();
    let saga = stack.start_saga().await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM payments WHERE status = 'completed' AND next_at IS NULL",
        )
        .fetch_one(&stack.db)
        .await
        .expect("count");
        if done as usize == total {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {total} completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_done = started.elapsed();
    let rows = sqlx::query(
        "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, charged_at) AS charged, \
         TIMESTAMPDIFF(MICROSECOND, created_at, updated_at) AS done FROM payments",
    )
    .fetch_all(&stack.db)
    .await
    .expect("rows");
    let mut charged: Vec<i64> = rows
        .iter()
        .map(|r| r.get::<i64, _>("charged") / 1000)
        .collect();
    let mut done: Vec<i64> = rows
        .iter()
        .map(|r| r.get::<i64, _>("done") / 1000)
        .collect();
    charged.sort_unstable();
    done.sort_unstable();
    let at = |v: &[i64], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "MEASURE {total} payments asked in {paid_in:?} ({:.0}/s) with no saga running, then \
         one saga, provider 20 ms: all completed and announced {all_done:?} after its start \
         ({:.0}/s); row -> charged ms p50 {} p99 {} max {}; row -> completed+announced ms \
         p50 {} p99 {} max {}",
        total as f64 / paid_in.as_secs_f64(),
        total as f64 / all_done.as_secs_f64(),
        at(&charged, 0.5),
        at(&charged, 0.99),
        at(&charged, 1.0),
        at(&done, 0.5),
        at(&done, 0.99),
        at(&done, 1.0),
    );
    assert!(
        orders
            .iter()
            .all(|(order, _)| stack.psp.succeeded(order) == 1)
    );
    saga.stop().await;
}
