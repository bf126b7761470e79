//! `/readyz` is public: a flood of probes must not turn into a flood of broker metadata calls.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};

use crate::helpers::{TestApp, spawn_app};

async fn readiness_checks(app: &TestApp) -> u64 {
    let metrics = app.request(Method::GET, "/metrics", None, &[], None).await;
    std::str::from_utf8(&metrics.bytes)
        .expect("text")
        .lines()
        .find_map(|l| l.strip_prefix("flashgate_readiness_checks_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("flashgate_readiness_checks_total in /metrics")
}

#[tokio::test]
async fn a_flood_of_readiness_probes_costs_one_dependency_check_a_second() {
    let app = Arc::new(spawn_app().await);
    let before = readiness_checks(&app).await;

    let started = Instant::now();
    let mut probes = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let app = app.clone();
        probes.spawn(async move { app.request(Method::GET, "/readyz", None, &[], None).await });
    }
    while let Some(reply) = probes.join_next().await {
        let reply = reply.expect("task");
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
        assert_eq!(reply.json["redis"], true);
        assert_eq!(reply.json["kafka"], true);
    }
    let elapsed = started.elapsed();

    let made = readiness_checks(&app).await - before;
    // One round per started second of the flood, whatever the number of probes.
    let allowed = elapsed.as_secs() + 1;
    assert!(
        (1..=allowed).contains(&made),
        "{made} rounds of checks for 200 probes in {elapsed:?}"
    );
    Arc::into_inner(app).expect("one owner").stop().await;
}
