//! Points: earned by paid purchases, spent on orders through the bucket's outbox, given
//! back, and the Redis cache kept equal to MySQL after every change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flashgate_events::keys::PointsKeys;
use flashgate_gateway::auth::Role;
use fred::prelude::{HashesInterface, KeysInterface};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, cancel_use as cancel, eventually, spawn_app, spawn_app_with};

async fn get_points(app: &TestApp, user: &str) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(Method::GET, "/v1/me/points", Some(&token), &[], None)
        .await
}

async fn balance(app: &TestApp, user: &str) -> i64 {
    let reply = get_points(app, user).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    reply.json["balance"].as_i64().expect("balance")
}

async fn use_points(app: &TestApp, user: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::POST,
        "/v1/me/points/use",
        Some(&token),
        headers,
        Some(body),
    )
    .await
}

async fn history(app: &TestApp, user: &str, query: &str) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::GET,
        &format!("/v1/me/points/history{query}"),
        Some(&token),
        &[],
        None,
    )
    .await
}

/// `(balance, version)` of the user's row in MySQL, and the sum of its ledger.
async fn mysql_points(app: &TestApp, user: &str) -> (i64, u64, i64) {
    let row: Option<(i64, u64)> =
        sqlx::query_as("SELECT balance, version FROM point_balances WHERE user_id = ?")
            .bind(user)
            .fetch_optional(&app.db)
            .await
            .expect("balance row");
    let sum: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(delta), 0) AS SIGNED) FROM point_ledger WHERE user_id = ?",
    )
    .bind(user)
    .fetch_one(&app.db)
    .await
    .expect("ledger sum");
    let (balance, version) = row.unwrap_or((0, 0));
    (balance, version, sum)
}

/// The user's cache hash in Redis.
async fn cache(app: &TestApp, user: &str) -> HashMap<String, String> {
    let key = PointsKeys::for_user(&app.settings.redis.key_prefix, user).balance(user);
    app.redis.hgetall(key).await.expect("HGETALL")
}

/// A gateway whose purchases earn no points.
async fn spawn_app_without_earning() -> TestApp {
    spawn_app_with(|settings| settings.points.earn_basis_points = 0).await
}

/// Gives `user` `points` in MySQL as an operator's adjustment would, and a reserved order.
async fn user_with_points_and_order(app: &TestApp, user: &str, points: i64) -> String {
    app.grant_points(user, points).await;
    // An order of 1,000,000: its discounts may sum to that much (uses are capped at the
    // order's amount), and the apps of these tests earn nothing, so the arithmetic below stays
    // about the uses.
    let sale = app.sale(json!({ "price": 1_000_000, "stock": 100 })).await;
    let reply = app.purchase(sale, user, 1).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    reply.json["order_id"].as_str().expect("order").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_purchase_earns_points_and_the_balance_is_right_after_every_change() {
    let app = spawn_app().await;
    let persister = app.start_persister().await;
    let user = "earner";
    assert_eq!(balance(&app, user).await, 0, "no points yet");

    // 2 units at 10,000, paid, earn 1 % of 20,000.
    let sale = app
        .sale(json!({ "price": 10_000, "stock": 10, "per_user_limit": 2 }))
        .await;
    let order = app.purchase(sale, user, 2).await;
    assert_eq!(order.status, StatusCode::ACCEPTED);
    let order_id = order.json["order_id"].as_str().expect("order").to_owned();
    let manager = app.token("manager-1", Role::Manager);
    let paid = app
        .request(
            Method::POST,
            &format!("/v1/admin/orders/{order_id}/mark-paid"),
            Some(&manager),
            &[],
            None,
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.json);
    assert!(eventually(|| async { balance(&app, user).await == 200 }).await);
    assert_eq!(mysql_points(&app, user).await, (200, 1, 200));

    // Spend 30 on another order, still open: the answer and the balance move at once.
    let next = app.sale(json!({ "price": 10_000, "stock": 10 })).await;
    let open = app.purchase(next, user, 1).await;
    assert_eq!(open.status, StatusCode::ACCEPTED, "{}", open.json);
    let open_id = open.json["order_id"].as_str().expect("order");
    let used = use_points(&app, user, json!({"amount": 30, "order_id": open_id}), &[]).await;
    assert_eq!(used.status, StatusCode::CREATED, "{}", used.json);
    assert_eq!(used.json["balance"], 170);
    let txid = used.json["txid"].as_str().expect("txid").to_owned();
    assert_eq!(balance(&app, user).await, 170);
    assert!(eventually(|| async { mysql_points(&app, user).await == (170, 2, 170) }).await);
    assert_eq!(balance(&app, user).await, 170, "the same once persisted");

    // Give it back, once.
    let back = cancel(&app, user, &txid).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.json);
    assert_eq!(
        (
            back.json["refunded"].as_i64(),
            back.json["balance"].as_i64()
        ),
        (Some(30), Some(200))
    );
    let again = cancel(&app, user, &txid).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
    assert_eq!(
        again.json["balance"], 200,
        "a second cancel gives nothing more"
    );
    assert!(eventually(|| async { mysql_points(&app, user).await == (200, 3, 200) }).await);
    assert_eq!(balance(&app, user).await, 200);
    let settled = cache(&app, user).await;
    assert_eq!(
        settled.get("pending").map(String::as_str),
        Some("0"),
        "{settled:?}"
    );
    assert_eq!(
        settled.get("version").map(String::as_str),
        Some("3"),
        "{settled:?}"
    );

    // The history, newest first, two per page.
    let page = history(&app, user, "?limit=2").await;
    assert_eq!(page.status, StatusCode::OK);
    let reasons: Vec<&str> = page.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(reasons, ["refund", "use"]);
    assert_eq!(page.json["entries"][0]["delta"], 30);
    let cursor = page.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let last = history(&app, user, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(last.json["entries"][0]["reason"], "earn");
    assert_eq!(last.json["entries"][0]["reference"], order_id.as_str());
    assert!(last.json["next_cursor"].is_null());
    persister.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_uses_never_drive_a_balance_below_zero() {
    let app = Arc::new(spawn_app_without_earning().await);
    let user = "spender";
    let order_id = user_with_points_and_order(&app, user, 1_000).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let app = app.clone();
        let order_id = order_id.clone();
        tasks.spawn(async move {
            use_points(&app, user, json!({"amount": 30, "order_id": order_id}), &[]).await
        });
    }
    let mut used = 0;
    let mut refused = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.expect("task");
        match reply.status {
            StatusCode::CREATED => {
                assert!(reply.json["balance"].as_i64().expect("balance") >= 0);
                used += 1;
            }
            StatusCode::CONFLICT => {
                assert_eq!(reply.code(), "insufficient_points");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.json),
        }
    }
    // 1,000 points pay for 33 uses of 30; the other 67 are refused.
    assert_eq!((used, refused), (33, 67));
    assert_eq!(balance(&app, user).await, 10);

    let persister = app.start_persister().await;
    assert!(
        eventually(|| async { mysql_points(&app, user).await.0 == 10 }).await,
        "{:?}",
        mysql_points(&app, user).await
    );
    let (row, _, ledger) = mysql_points(&app, user).await;
    assert_eq!((row, ledger), (10, 10), "the ledger sums to the balance");
    let uses: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM point_ledger WHERE user_id = ? AND reason = 'use'",
    )
    .bind(user)
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(uses, 33);
    assert!(
        eventually(|| async {
            cache(&app, user).await.get("pending").map(String::as_str) == Some("0")
        })
        .await
    );
    assert_eq!(balance(&app, user).await, 10);
    persister.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_replays_a_use_and_another_body_gets_422() {
    let app = spawn_app_without_earning().await;
    let user = "careful";
    let order_id = user_with_points_and_order(&app, user, 100).await;
    let body = json!({"amount": 40, "order_id": order_id});
    let key = [("idempotency-key", "use-once-1")];
    let first = use_points(&app, user, body.clone(), &key).await;
    let second = use_points(&app, user, body, &key).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(first.json["txid"], second.json["txid"]);
    assert_eq!(balance(&app, user).await, 60, "spent once");
    let other = use_points(
        &app,
        user,
        json!({"amount": 41, "order_id": order_id}),
        &key,
    )
    .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.code(), "idempotency_key_reused");
    assert_eq!(balance(&app, user).await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_point_requests_get_4xx_and_change_nothing() {
    let app = spawn_app_without_earning().await;
    let user = "clumsy";
    let order_id = user_with_points_and_order(&app, user, 100).await;
    for (body, field) in [
        (json!({"amount": 0, "order_id": order_id}), "amount"),
        (json!({"amount": -5, "order_id": order_id}), "amount"),
        (json!({"amount": 5}), "order_id"),
        (json!({"amount": 5, "order_id": ""}), "order_id"),
        (json!({"amount": 5, "order_id": order_id, "tip": 1}), "tip"),
        (json!("{not json"), "JSON"),
    ] {
        let reply = use_points(&app, user, body.clone(), &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.json
        );
        assert_eq!(reply.code(), "invalid_request");
        let message = reply.json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
    let unknown = use_points(&app, user, json!({"amount": 5, "order_id": "1-nope"}), &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let not_mine = use_points(
        &app,
        "stranger",
        json!({"amount": 5, "order_id": order_id}),
        &[],
    )
    .await;
    assert_eq!(
        not_mine.status,
        StatusCode::NOT_FOUND,
        "someone else's order"
    );
    let too_much = use_points(
        &app,
        user,
        json!({"amount": 101, "order_id": order_id}),
        &[],
    )
    .await;
    assert_eq!(
        (too_much.status, too_much.code()),
        (StatusCode::CONFLICT, "insufficient_points")
    );

    let used = use_points(&app, user, json!({"amount": 10, "order_id": order_id}), &[]).await;
    let txid = used.json["txid"].as_str().expect("txid").to_owned();
    assert_eq!(
        cancel(&app, "stranger", &txid).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        cancel(&app, user, "use-nothex").await.status,
        StatusCode::NOT_FOUND
    );
    let unknown_use = format!("use-{}", "0".repeat(32));
    assert_eq!(
        cancel(&app, user, &unknown_use).await.status,
        StatusCode::NOT_FOUND
    );

    let manager = app.token("m", Role::Manager);
    let forbidden = app
        .request(Method::GET, "/v1/me/points", Some(&manager), &[], None)
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let anonymous = app
        .request(Method::GET, "/v1/me/points", None, &[], None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let bad_cursor = history(&app, user, "?cursor=abc").await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
    let wrong_method = app
        .request(
            Method::DELETE,
            "/v1/me/points/use",
            Some(&app.token(user, Role::Shopper)),
            &[],
            None,
        )
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        balance(&app, user).await,
        90,
        "only the one good use counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_cache_is_rebuilt_from_mysql_keeping_the_uses_not_yet_persisted() {
    let app = spawn_app_without_earning().await;
    let user = "rebuilt";
    let order_id = user_with_points_and_order(&app, user, 500).await;
    for _ in 0..3 {
        let reply = use_points(&app, user, json!({"amount": 50, "order_id": order_id}), &[]).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    // The cache loses its MySQL part (as the persister drops it when a change arrives out of
    // order): the three uses are still pending, MySQL does not have them yet.
    let key = PointsKeys::for_user(&app.settings.redis.key_prefix, user).balance(user);
    let _: i64 = app
        .redis
        .hdel(&key, vec!["balance", "version"])
        .await
        .expect("HDEL");
    assert_eq!(balance(&app, user).await, 350, "500 in MySQL, 150 pending");

    let persister = app.start_persister().await;
    // The three uses may land in one commit or in several; each commit bumps the version.
    assert!(
        eventually(|| async {
            let (balance, version, ledger) = mysql_points(&app, user).await;
            (balance, ledger) == (350, 350) && version >= 2
        })
        .await,
        "{:?}",
        mysql_points(&app, user).await
    );
    assert!(
        eventually(|| async {
            cache(&app, user).await.get("pending").map(String::as_str) == Some("0")
        })
        .await
    );
    assert_eq!(balance(&app, user).await, 350);

    // Lost entirely (a Redis failover that lost writes): MySQL has everything persisted.
    let _: i64 = app.redis.del(&key).await.expect("DEL");
    assert_eq!(balance(&app, user).await, 350);
    persister.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_mysql_cannot_pay_for_is_recorded_refused_and_its_points_come_back() {
    // A compensations topic of this test alone, to read its `points.rejected`.
    let compensations = flashgate_testkit::fresh_topic(
        &crate::helpers::stack_settings(),
        "flashgate.test-comp-",
        1,
    )
    .await;
    let app = spawn_app_with(|settings| {
        settings.points.earn_basis_points = 0;
        settings.kafka.compensations_topic = compensations;
    })
    .await;
    let user = "overdrawn";
    let order_id = user_with_points_and_order(&app, user, 100).await;
    assert_eq!(balance(&app, user).await, 100);
    // Redis believes in 1,000 more points than MySQL has (writes lost in a failover, say).
    let key = PointsKeys::for_user(&app.settings.redis.key_prefix, user).balance(user);
    let _: i64 = app
        .redis
        .hincrby(&key, "balance", 1_000)
        .await
        .expect("HINCRBY");
    let believed = balance(&app, user).await;
    assert_eq!(believed, 1_100);
    let used = use_points(
        &app,
        user,
        json!({"amount": 600, "order_id": order_id}),
        &[],
    )
    .await;
    assert_eq!(used.status, StatusCode::CREATED, "Redis admits it");
    let txid = used.json["txid"].as_str().expect("txid").to_owned();
    assert_eq!(balance(&app, user).await, 500);

    let persister = app.start_persister().await;
    assert!(
        eventually(|| async {
            sqlx::query_scalar::<_, String>("SELECT reason FROM point_ledger WHERE txid = ?")
                .bind(&txid)
                .fetch_optional(&app.db)
                .await
                .expect("ledger")
                .as_deref()
                == Some("rejected")
        })
        .await
    );
    assert_eq!(
        mysql_points(&app, user).await,
        (100, 1, 100),
        "never below what it had"
    );
    assert!(
        eventually(|| async {
            cache(&app, user).await.get("pending").map(String::as_str) == Some("0")
        })
        .await
    );
    // The refused 600 come back to the shopper. (The 1,000 Redis invented stay in the cache
    // until reconcile-points repairs it; MySQL's guard is what keeps them from being spent.)
    assert_eq!(balance(&app, user).await, believed, "the points came back");
    let settings = app.settings.clone();
    let announced = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &settings.kafka.compensations_topic,
            1,
            Duration::from_secs(60),
            Duration::ZERO,
        )
    })
    .await
    .expect("reader");
    let event: Value = serde_json::from_slice(
        &announced
            .first()
            .expect("points.rejected announced")
            .payload,
    )
    .expect("json");
    assert_eq!(
        (
            &event["type"],
            &event["data"]["txid"],
            &event["data"]["user_id"]
        ),
        (&json!("points.rejected"), &json!(txid), &json!(user)),
        "{event}"
    );
    assert_eq!(event["data"]["amount"], 600, "{event}");
    let cancelled = cancel(&app, user, &txid).await;
    assert_eq!(
        cancelled.status,
        StatusCode::OK,
        "the cancel of a refused use is harmless"
    );
    assert!(
        eventually(|| async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM point_ledger WHERE user_id = ? AND reason = 'rejected'",
            )
            .bind(user)
            .fetch_one(&app.db)
            .await
            .expect("count")
                == 2
        })
        .await
    );
    assert_eq!(mysql_points(&app, user).await, (100, 1, 100));
    persister.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_use_redis_forgot_is_cancelled_from_the_ledger() {
    let app = spawn_app_without_earning().await;
    let persister = app.start_persister().await;
    let user = "forgotten";
    let order_id = user_with_points_and_order(&app, user, 100).await;
    let used = use_points(&app, user, json!({"amount": 25, "order_id": order_id}), &[]).await;
    let txid = used.json["txid"].as_str().expect("txid").to_owned();
    assert!(eventually(|| async { mysql_points(&app, user).await == (75, 2, 75) }).await);
    let record = PointsKeys::for_user(&app.settings.redis.key_prefix, user).use_record(&txid);
    let _: i64 = app.redis.del(&record).await.expect("DEL");

    let back = cancel(&app, user, &txid).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.json);
    assert_eq!(back.json["refunded"], 25);
    assert!(eventually(|| async { mysql_points(&app, user).await == (100, 3, 100) }).await);
    assert_eq!(balance(&app, user).await, 100);
    persister.stop().await;
}
