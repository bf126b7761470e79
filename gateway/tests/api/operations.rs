//! What operators and clients rely on around every request: the client's request id echoed,
//! the request timeout, the token's `nbf` and `iss`, the outbox bound on claims and uses of
//! points, and the 409s of cancelling what cannot be cancelled.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashgate_events::keys::{PointsKeys, PolicyKeys};
use flashgate_gateway::auth::Role;
use fred::prelude::{HashesInterface, KeysInterface};
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{
    Reply, TEST_SECRET, TestApp, eventually, points_balance, redis_now_ms, spawn_app,
    spawn_app_with,
};
use crate::private_redis::PrivateRedis;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn signed(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .expect("sign")
}

async fn purchase_with_token(app: &TestApp, sale_id: u64, token: &str) -> Reply {
    app.request(
        Method::POST,
        &format!("/v1/sales/{sale_id}/purchases"),
        Some(token),
        &[],
        Some(json!({"quantity": 1})),
    )
    .await
}

async fn stock(app: &TestApp, sale_id: u64) -> i64 {
    app.redis
        .get(format!(
            "{}:{{s:{sale_id}}}:stock",
            app.settings.redis.key_prefix
        ))
        .await
        .expect("stock")
}

async fn use_points(app: &TestApp, user: &str, amount: i64, order_id: &str) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::POST,
        "/v1/me/points/use",
        Some(&token),
        &[],
        Some(json!({"amount": amount, "order_id": order_id})),
    )
    .await
}

/// Gives `user` `points` in MySQL (an operator's adjustment) and an order of 1,000,000.
async fn user_with_points_and_order(app: &TestApp, user: &str, points: i64) -> String {
    app.grant_points(user, points).await;
    let sale = app
        .sale(json!({"price": 1_000_000, "stock": 100, "per_user_limit": 5}))
        .await;
    let reply = app.purchase(sale, user, 1).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    reply.json["order_id"].as_str().expect("order").to_owned()
}

#[tokio::test]
async fn a_clients_request_id_is_echoed_and_a_missing_one_is_made() {
    let app = spawn_app().await;

    let given = app
        .request(
            Method::GET,
            "/healthz",
            None,
            &[("x-request-id", "client-trace-4711")],
            None,
        )
        .await;
    let made = app.request(Method::GET, "/healthz", None, &[], None).await;
    let refused = app
        .request(
            Method::GET,
            "/v1/me/points",
            None,
            &[("x-request-id", "client-trace-4712")],
            None,
        )
        .await;

    assert_eq!(given.status, StatusCode::OK);
    assert_eq!(given.headers["x-request-id"], "client-trace-4711");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.headers["x-request-id"], "client-trace-4712",
        "errors carry the client's id too"
    );
    let made = made.headers["x-request-id"].to_str().expect("ascii");
    assert!(!made.is_empty() && made != "client-trace-4711", "{made}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlasts_the_request_timeout_is_answered_503_overloaded() {
    let redis = PrivateRedis::start().await;
    let app = spawn_app_with(|settings| {
        settings.redis.sentinels.clear();
        settings.redis.url = Some(format!("redis://127.0.0.1:{}", redis.port));
        // Redis may take its time; the request may not.
        settings.redis.command_timeout_ms = 10_000;
        settings.gateway.request_timeout_ms = 300;
    })
    .await;
    let sale_id = app.sale(json!({"stock": 10})).await;

    let awake = redis.hang(1.5).await;
    let started = Instant::now();
    let late = app.purchase(sale_id, "tim", 1).await;
    let answered_in = started.elapsed();
    awake.await.expect("the server woke up");

    assert_eq!(
        late.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        late.json
    );
    assert_eq!(late.code(), "overloaded", "{}", late.json);
    assert!(late.headers.contains_key("retry-after"));
    assert!(
        answered_in < Duration::from_millis(1_200),
        "answered at the timeout, not when Redis woke: {answered_in:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn tokens_not_yet_valid_or_from_another_issuer_get_401_and_change_nothing() {
    let app = spawn_app_with(|s| s.gateway.jwt.issuer = Some("flashgate-test-issuer".into())).await;
    let sale_id = app.sale(json!({"stock": 5, "per_user_limit": 5})).await;
    let claims = |extra: Value| {
        // A `jti` because token revocation is on by default (without one a token is refused).
        let mut claims = json!({"sub": "nina", "roles": ["shopper"], "exp": now() + 600, "jti": crate::helpers::unique("jti")});
        if let (Value::Object(base), Value::Object(extra)) = (&mut claims, extra) {
            base.extend(extra);
        }
        signed(claims)
    };

    let cases = [
        (
            "nbf ten minutes ahead",
            claims(json!({"iss": "flashgate-test-issuer", "nbf": now() + 600})),
        ),
        ("another issuer", claims(json!({"iss": "someone-else"}))),
        ("no issuer at all", claims(json!({}))),
    ];
    for (case, token) in cases {
        let reply = purchase_with_token(&app, sale_id, &token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            reply.json
        );
        assert_eq!(reply.code(), "unauthenticated", "{case}");
    }
    assert_eq!(stock(&app, sale_id).await, 5, "no refused token took stock");

    // The same claims from the right issuer, valid since a minute ago, are accepted.
    let good = claims(json!({"iss": "flashgate-test-issuer", "nbf": now() - 60}));
    let reply = purchase_with_token(&app, sale_id, &good).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    assert_eq!(stock(&app, sale_id).await, 4);
    app.stop().await;
}

/// A gateway whose broker is not there, so nothing leaves an outbox, which holds two entries.
async fn spawn_app_with_a_full_outbox_soon() -> TestApp {
    spawn_app_with(|s| {
        s.kafka.brokers = "127.0.0.1:1".into();
        s.kafka.message_timeout_ms = 1_000;
        s.gateway.outbox_max_len = 2;
        s.gateway.shutdown_grace_ms = 3_000;
        s.points.earn_basis_points = 0;
    })
    .await
}

fn assert_overloaded(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.json
    );
    assert_eq!(reply.code(), "overloaded", "{}", reply.json);
    let retry_after = reply.headers["retry-after"].to_str().expect("ascii");
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s > 0),
        "{retry_after}"
    );
}

#[tokio::test]
async fn a_full_policy_outbox_refuses_claims_with_503_overloaded_and_retry_after() {
    let app = spawn_app_with_a_full_outbox_soon().await;
    let policy_id = app.policy(json!({"total_quantity": 10})).await;
    for user in ["ann", "ben"] {
        let claimed = app.claim(policy_id, user, &[]).await;
        assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.json);
    }

    let refused = app.claim(policy_id, "cat", &[]).await;

    assert_overloaded(&refused);
    let keys = PolicyKeys::new(&app.settings.redis.key_prefix, policy_id);
    let remaining: i64 = app.redis.get(keys.remaining).await.expect("remaining");
    assert_eq!(remaining, 8, "the refusal took no coupon");
    app.stop().await;
}

#[tokio::test]
async fn a_full_points_outbox_refuses_uses_with_503_overloaded_and_retry_after() {
    let app = spawn_app_with_a_full_outbox_soon().await;
    let user = "olga";
    let order_id = user_with_points_and_order(&app, user, 1_000).await;
    assert_eq!(points_balance(&app, user).await, 1_000);
    for _ in 0..2 {
        let used = use_points(&app, user, 10, &order_id).await;
        assert_eq!(used.status, StatusCode::CREATED, "{}", used.json);
    }

    let refused = use_points(&app, user, 10, &order_id).await;

    assert_overloaded(&refused);
    assert_eq!(
        points_balance(&app, user).await,
        980,
        "the refusal took no points"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_use_mysql_refused_and_redis_forgot_is_409_use_rejected_and_gives_nothing_back()
 {
    let app = spawn_app_with(|s| s.points.earn_basis_points = 0).await;
    let user = "rejected-use";
    let order_id = user_with_points_and_order(&app, user, 100).await;
    assert_eq!(points_balance(&app, user).await, 100);
    // Redis believes in 1,000 more points than MySQL has: the use passes Redis, not MySQL.
    let key = PointsKeys::for_user(&app.settings.redis.key_prefix, user).balance(user);
    let _: i64 = app
        .redis
        .hincrby(&key, "balance", 1_000)
        .await
        .expect("HINCRBY");
    let used = use_points(&app, user, 600, &order_id).await;
    assert_eq!(used.status, StatusCode::CREATED, "{}", used.json);
    let txid = used.json["txid"].as_str().expect("txid").to_owned();
    let persister = app.start_persister().await;
    assert!(
        eventually(|| async {
            let reason: Option<String> =
                sqlx::query_scalar("SELECT reason FROM point_ledger WHERE txid = ?")
                    .bind(&txid)
                    .fetch_optional(&app.db)
                    .await
                    .expect("ledger");
            let pending: Option<String> = app.redis.hget(&key, "pending").await.expect("HGET");
            reason.as_deref() == Some("rejected") && pending.as_deref() == Some("0")
        })
        .await,
        "MySQL refused the use and the cache settled"
    );
    let before = points_balance(&app, user).await;
    // Its record in Redis is gone (kept `points.use_record_ttl_secs`): the ledger answers.
    let keys = PointsKeys::for_user(&app.settings.redis.key_prefix, user);
    let _: i64 = app.redis.del(keys.use_record(&txid)).await.expect("DEL");

    let token = app.token(user, Role::Shopper);
    let cancelled = app
        .request(
            Method::POST,
            &format!("/v1/me/points/use/{txid}/cancel"),
            Some(&token),
            &[],
            None,
        )
        .await;

    assert_eq!(cancelled.status, StatusCode::CONFLICT, "{}", cancelled.json);
    assert_eq!(cancelled.code(), "use_rejected", "{}", cancelled.json);
    assert_eq!(
        points_balance(&app, user).await,
        before,
        "nothing is given back twice"
    );
    persister.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn cancelling_the_redemption_of_an_expired_coupon_is_409_coupon_expired() {
    let app = spawn_app().await;
    let sale = app.sale(json!({"price": 10_000})).await;
    let ordered = app.purchase(sale, "edda", 1).await;
    assert_eq!(ordered.status, StatusCode::ACCEPTED, "{}", ordered.json);
    let order_id = ordered.json["order_id"].as_str().expect("order").to_owned();
    let policy_id = app.policy(json!({"valid_for_seconds": 2})).await;
    let claimed = app.claim(policy_id, "edda", &[]).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.json);
    let coupon = claimed.json["coupon_id"]
        .as_str()
        .expect("coupon")
        .to_owned();
    let expires_ms = chrono::DateTime::parse_from_rfc3339(
        claimed.json["expires_at"].as_str().expect("expires_at"),
    )
    .expect("a time")
    .timestamp_millis();
    let redeemed = app
        .coupon_action(
            &coupon,
            "redeem",
            "edda",
            Some(json!({"order_id": order_id})),
        )
        .await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.json);

    // The scenario is the coupon's expiry: wait for Redis's clock (the scripts') to pass it.
    while redis_now_ms(&app).await <= expires_ms {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = app
        .coupon_action(&coupon, "cancel-redemption", "edda", None)
        .await;

    assert_eq!(
        (late.status, late.code()),
        (StatusCode::CONFLICT, "coupon_expired"),
        "{}",
        late.json
    );
    app.stop().await;
}
