//! The guards against a failing dependency, on the real stack: MySQL cut off behind a relay
//! (the shared MariaDB keeps running for every other test) opens the breaker of the routes
//! that read it, which then answer 503 `dependency_unavailable` at once while purchases and
//! claims go on; MySQL back, a probe closes it. And the bound on Redis calls in flight sheds
//! purchases and claims with 503 `overloaded` without losing or overselling anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_config::{BreakerSettings, Secret};
use flashgate_gateway::auth::Role;
use flashgate_testkit::relay::{Cut, Relay};
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Reply, TestApp, eventually, sale_counters, spawn_app_with, unique};

/// How fast an open breaker answers: the contract of the breaker, not a benchmark.
const AT_ONCE: Duration = Duration::from_millis(50);

/// The breaker of these tests: a call gets 300 ms, three failures open it for 2 s.
const BREAKER: BreakerSettings = BreakerSettings {
    mysql_timeout_ms: 300,
    failures_to_open: 3,
    failure_window_ms: 10_000,
    open_ms: 2_000,
};

/// A gateway whose MySQL is reached through `relay`.
async fn app_behind(relay: &Relay) -> TestApp {
    spawn_app_with(|settings| {
        settings.mysql.url = Secret::new(relay.rewrite_url(settings.mysql.url.expose()));
        settings.gateway.breaker = BREAKER;
    })
    .await
}

/// A metric's value in `/metrics`.
async fn metric(app: &TestApp, line_start: &str) -> u64 {
    app.metric(line_start)
        .await
        .unwrap_or_else(|| panic!("{line_start} in /metrics"))
}

async fn breaker_state(app: &TestApp) -> u64 {
    metric(app, r#"flashgate_breaker_state{breaker="mysql"} "#).await
}

/// `GET path` with `token`, and how long the answer took.
async fn timed_get(app: &TestApp, path: &str, token: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = app.request(Method::GET, path, Some(token), &[], None).await;
    (reply, started.elapsed())
}

fn assert_unavailable(reply: &Reply, path: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable"),
        "{path}: {}",
        reply.json
    );
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!(
        (1..=2).contains(&retry_after),
        "{path}: Retry-After {retry_after}"
    );
}

#[tokio::test]
async fn with_mysql_cut_off_the_read_routes_answer_503_at_once_once_the_breaker_opens_while_purchases_and_claims_go_on()
 {
    let relay = Relay::to_url(flashgate_testkit::stack_settings().mysql.url.expose()).await;
    let app = app_behind(&relay).await;
    let sale_id = app.sale(json!({ "stock": 100 })).await;
    let policy_id = app.policy(json!({ "total_quantity": 100 })).await;
    let shopper = app.token("breaker-shopper", Role::Shopper);
    let manager = app.token("manager-1", Role::Manager);
    // A shopper whose balance Redis has not cached: reading it reads MySQL.
    let newcomer = app.token("breaker-newcomer", Role::Shopper);
    let bought = app.purchase(sale_id, "breaker-shopper", 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.json);
    let order_id = bought.json["order_id"]
        .as_str()
        .expect("order_id")
        .to_owned();
    let reads = [
        ("/v1/me/orders".to_owned(), &shopper),
        (format!("/v1/orders/{order_id}"), &shopper),
        ("/v1/me/coupons".to_owned(), &shopper),
        ("/v1/me/points/history".to_owned(), &shopper),
        ("/v1/me/points".to_owned(), &newcomer),
        ("/v1/admin/sales".to_owned(), &manager),
        (format!("/v1/admin/sales/{sale_id}"), &manager),
        ("/v1/admin/coupon-policies".to_owned(), &manager),
        (format!("/v1/admin/coupon-policies/{policy_id}"), &manager),
    ];
    for (path, token) in &reads {
        if *token != &newcomer {
            let (reply, _) = timed_get(&app, path, token).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.json);
        }
    }
    // The shopper's balance is cached in Redis from now on.
    let (reply, _) = timed_get(&app, "/v1/me/points", &shopper).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(breaker_state(&app).await, 0, "closed");

    relay.cut(Cut::Blackhole);
    // Each call MySQL does not answer costs the call timeout, and is told so (503, not 500),
    // until the third opens the breaker.
    for _ in 0..BREAKER.failures_to_open {
        let (reply, took) = timed_get(&app, "/v1/me/orders", &shopper).await;
        assert_unavailable(&reply, "/v1/me/orders");
        assert!(
            took >= Duration::from_millis(BREAKER.mysql_timeout_ms),
            "{took:?}"
        );
    }
    assert_eq!(breaker_state(&app).await, 1, "open");
    assert_eq!(
        metric(&app, r#"flashgate_breaker_trips_total{breaker="mysql"} "#).await,
        1
    );

    let mut slowest = Duration::ZERO;
    for (path, token) in &reads {
        let (reply, took) = timed_get(&app, path, token).await;
        assert_unavailable(&reply, path);
        assert!(took < AT_ONCE, "{path} took {took:?} with the breaker open");
        slowest = slowest.max(took);
    }
    println!("slowest answer with the breaker open: {slowest:?}");
    for i in 0..20 {
        let user = format!("breaker-buyer-{i}");
        let reply = app.purchase(sale_id, &user, 1).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
        let reply = app.claim(policy_id, &user, &[]).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
    }
    assert_eq!(
        metric(
            &app,
            r#"flashgate_breaker_rejections_total{breaker="mysql"} "#
        )
        .await,
        reads.len() as u64
    );
    // A balance Redis holds needs no MySQL: it is answered whatever the breaker says.
    let (reply, _) = timed_get(&app, "/v1/me/points", &shopper).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(breaker_state(&app).await, 1, "still open");

    relay.restore();
    assert!(
        eventually(|| async {
            timed_get(&app, "/v1/me/orders", &shopper).await.0.status == StatusCode::OK
        })
        .await,
        "the breaker never closed"
    );
    assert_eq!(breaker_state(&app).await, 0, "closed again");
    for (path, token) in &reads {
        let (reply, _) = timed_get(&app, path, token).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.json);
    }
    app.stop().await;
}

#[tokio::test]
async fn after_the_cool_down_one_probe_half_opens_the_breaker_a_failed_probe_opens_it_again_and_an_answered_one_closes_it()
 {
    let relay = Relay::to_url(flashgate_testkit::stack_settings().mysql.url.expose()).await;
    let app = Arc::new(app_behind(&relay).await);
    let shopper = app.token("probe-shopper", Role::Shopper);
    // A refused connection is a failure too (a stopped server rather than a vanished host).
    relay.cut(Cut::Refuse);
    for _ in 0..BREAKER.failures_to_open {
        let (reply, _) = timed_get(&app, "/v1/me/points/history", &shopper).await;
        assert_unavailable(&reply, "/v1/me/points/history");
    }
    assert_eq!(breaker_state(&app).await, 1, "open");

    relay.cut(Cut::Blackhole);
    tokio::time::sleep(Duration::from_millis(BREAKER.open_ms)).await;
    // The probe waits for MySQL (the call timeout); meanwhile the breaker is half-open and
    // every other call is refused at once.
    let probe = tokio::spawn({
        let (app, shopper) = (app.clone(), shopper.clone());
        async move { timed_get(&app, "/v1/me/orders", &shopper).await }
    });
    assert!(
        eventually(|| async { breaker_state(&app).await == 2 }).await,
        "never half-open"
    );
    let (reply, took) = timed_get(&app, "/v1/me/coupons", &shopper).await;
    assert_unavailable(&reply, "/v1/me/coupons");
    assert!(took < AT_ONCE, "refused during the probe in {took:?}");
    let (reply, _) = probe.await.expect("probe");
    assert_unavailable(&reply, "the probe");
    assert_eq!(
        breaker_state(&app).await,
        1,
        "the failed probe opens it again"
    );
    assert_eq!(
        metric(&app, r#"flashgate_breaker_trips_total{breaker="mysql"} "#).await,
        2
    );

    relay.restore();
    tokio::time::sleep(Duration::from_millis(BREAKER.open_ms)).await;
    let (reply, _) = timed_get(&app, "/v1/me/orders", &shopper).await;
    assert_eq!(reply.status, StatusCode::OK, "the probe: {}", reply.json);
    assert_eq!(breaker_state(&app).await, 0, "closed by the answered probe");
    Arc::into_inner(app).expect("one owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_of_redis_calls_in_flight_purchases_and_claims_are_shed_at_once_and_nothing_is_lost_or_oversold()
 {
    let app = Arc::new(
        spawn_app_with(|settings| {
            settings.gateway.redis_max_in_flight = 2;
        })
        .await,
    );
    let (stock, shoppers) = (50_i64, 200);
    let sale_id = app
        .sale(json!({ "stock": stock, "per_user_limit": 1 }))
        .await;
    let policy_id = app.policy(json!({ "total_quantity": stock })).await;
    let run = unique("shed");

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..shoppers {
        let (app, user) = (app.clone(), format!("{run}-{i}"));
        calls.spawn(async move {
            let started = Instant::now();
            let bought = app.purchase(sale_id, &user, 1).await;
            let bought_in = started.elapsed();
            let started = Instant::now();
            let claimed = app.claim(policy_id, &user, &[]).await;
            (bought, bought_in, claimed, started.elapsed())
        });
    }
    let (mut admitted, mut sold_out, mut shed) = (0_i64, 0_i64, 0_u64);
    let (mut issued, mut exhausted) = (0_i64, 0_i64);
    let mut shed_times = Vec::new();
    while let Some(done) = calls.join_next().await {
        let (bought, bought_in, claimed, claimed_in) = done.expect("task");
        for (reply, took) in [(&bought, bought_in), (&claimed, claimed_in)] {
            if reply.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(reply.code(), "overloaded", "{}", reply.json);
                assert_eq!(reply.headers["retry-after"], "1");
                shed += 1;
                shed_times.push(took);
            }
        }
        match (bought.status, bought.code()) {
            (StatusCode::ACCEPTED, _) => admitted += 1,
            (StatusCode::CONFLICT, "sold_out") => sold_out += 1,
            (StatusCode::SERVICE_UNAVAILABLE, _) => {}
            other => panic!("purchase: {other:?} {}", bought.json),
        }
        match (claimed.status, claimed.code()) {
            (StatusCode::CREATED, _) => issued += 1,
            (StatusCode::CONFLICT, "exhausted") => exhausted += 1,
            (StatusCode::SERVICE_UNAVAILABLE, _) => {}
            other => panic!("claim: {other:?} {}", claimed.json),
        }
    }
    shed_times.sort();
    println!(
        "admitted {admitted}, sold out {sold_out}, issued {issued}, exhausted {exhausted}, \
         shed {shed} (median answer {:?}, slowest {:?})",
        shed_times.get(shed_times.len() / 2),
        shed_times.last()
    );
    assert!(
        shed > 0,
        "a bound of 2 with {shoppers} shoppers at once sheds some"
    );
    assert_eq!(
        metric(&app, r#"flashgate_shed_total{reason="redis_in_flight"} "#).await,
        shed
    );
    assert_eq!(metric(&app, "flashgate_redis_in_flight ").await, 0);
    // Counts add up: every purchase answered once, none beyond the stock.
    assert!(admitted <= stock && issued <= stock, "{admitted} {issued}");
    let (remaining, held, paid, total) = sale_counters(&app, sale_id).await;
    assert_eq!((held, paid, total), (admitted, 0, stock));
    assert_eq!(remaining, stock - admitted);
    if sold_out > 0 {
        assert_eq!(remaining, 0, "sold out only once nothing is left");
    }
    let policy = app.get_policy(policy_id).await;
    assert_eq!(
        policy.json["remaining"],
        json!(stock - issued),
        "{}",
        policy.json
    );
    // Nothing lost: every admitted order reaches MySQL.
    let persister = app.start_persister().await;
    let persisted = app
        .wait_for_count(
            &format!("SELECT COUNT(*) FROM orders WHERE sale_id = {sale_id}"),
            admitted,
        )
        .await;
    assert_eq!(persisted, admitted);
    persister.stop().await;
    Arc::into_inner(app).expect("one owner").stop().await;
}
