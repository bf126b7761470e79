//! Answers that must come out once and the same: every state-changing script run twice with
//! the same arguments (as the Redis client re-sends a call whose connection closed), a call
//! whose answer was lost, stored answers replayed, and the idempotency keys of different users.

use std::collections::HashMap;
use std::time::Duration;

use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::{PointsKeys, PolicyKeys, SaleKeys};
use flashgate_gateway::scripts::{Script, Scripts};
use fred::prelude::{HashesInterface, KeysInterface, Pool, SortedSetsInterface, Value};
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app, spawn_app_with, unique};
use crate::private_redis::PrivateRedis;

/// Runs `script` once (`EVALSHA`) and returns its reply.
async fn once(redis: &Pool, script: &Script, keys: Vec<String>, args: Vec<Value>) -> Vec<Value> {
    script.run(redis, keys, args).await.expect("script runs")
}

/// Runs `script` twice with exactly the same keys and arguments, as a re-send would.
async fn twice(
    redis: &Pool,
    script: &Script,
    keys: Vec<String>,
    args: Vec<Value>,
) -> (Vec<Value>, Vec<Value>) {
    let first = once(redis, script, keys.clone(), args.clone()).await;
    let second = once(redis, script, keys, args).await;
    (first, second)
}

fn code(reply: &[Value]) -> String {
    reply.first().and_then(Value::as_string).unwrap_or_default()
}

async fn hash(redis: &Pool, key: &str) -> HashMap<String, String> {
    redis.hgetall(key).await.expect("HGETALL")
}

fn sale_keys(app: &TestApp, sale_id: u64) -> SaleKeys {
    SaleKeys::new(&app.settings.redis.key_prefix, sale_id)
}

fn policy_keys(app: &TestApp, policy_id: u64) -> PolicyKeys {
    PolicyKeys::new(&app.settings.redis.key_prefix, policy_id)
}

/// ARGV of `lua/purchase.lua`.
fn purchase_args(user: &str, quantity: i64, order_id: &str) -> Vec<Value> {
    vec![
        user.into(),
        quantity.into(),
        order_id.into(),
        "trace-1".into(),
        100_000.into(),
        3_600.into(),
        format!("quantity={quantity}").into(),
    ]
}

#[tokio::test]
async fn a_purchase_run_twice_takes_stock_once_and_answers_the_same_order() {
    let app = spawn_app().await;
    let scripts = Scripts::new();
    let sale_id = app.sale(json!({"stock": 10, "per_user_limit": 5})).await;
    let keys = sale_keys(&app, sale_id);
    let base = vec![
        keys.sale.clone(),
        keys.stock.clone(),
        keys.buyers.clone(),
        keys.outbox.clone(),
        keys.orders.clone(),
        keys.holds.clone(),
    ];

    // Without an idempotency key (nothing stored to replay) and with one.
    let mut with_key = base.clone();
    with_key.push(keys.idempotency("ann", "try-1"));
    for (keys_of_call, order_id) in [
        (base, format!("{sale_id}-first")),
        (with_key, format!("{sale_id}-second")),
    ] {
        let (first, second) = twice(
            &app.redis,
            &scripts.purchase,
            keys_of_call,
            purchase_args("ann", 2, &order_id),
        )
        .await;
        assert_eq!(code(&first), "admitted", "{first:?}");
        assert_eq!(first, second, "the second run answers as the first");
    }

    let stock: i64 = app.redis.get(&keys.stock).await.expect("stock");
    assert_eq!(stock, 6, "two calls of 2 units, each run twice");
    let buyers = hash(&app.redis, &keys.buyers).await;
    assert_eq!(buyers["ann"], "4");
    assert_eq!(hash(&app.redis, &keys.sale).await["admitted"], "4");
    assert_eq!(hash(&app.redis, &keys.orders).await.len(), 2);
    let held: i64 = app.redis.zcard(&keys.holds).await.expect("holds");
    assert_eq!(held, 2, "each order held once");
    assert_eq!(hash(&app.redis, &keys.sale).await["held"], "4");
    app.stop().await;
}

#[tokio::test]
async fn a_claim_run_twice_issues_one_coupon_and_answers_the_same() {
    let app = spawn_app().await;
    let scripts = Scripts::new();
    let policy_id = app
        .policy(json!({"total_quantity": 5, "per_user_limit": 2}))
        .await;
    let keys = policy_keys(&app, policy_id);
    let coupon_id = format!("{policy_id}-{}", uuid::Uuid::now_v7().simple());

    let (first, second) = twice(
        &app.redis,
        &scripts.claim_coupon,
        vec![
            keys.policy.clone(),
            keys.remaining.clone(),
            keys.holders.clone(),
            keys.outbox.clone(),
            keys.coupon(&coupon_id),
        ],
        vec![
            "bea".into(),
            coupon_id.as_str().into(),
            "trace-1".into(),
            100_000.into(),
            3_600.into(),
        ],
    )
    .await;

    assert_eq!(code(&first), "issued", "{first:?}");
    assert_eq!(first, second, "the second run answers as the first");
    let remaining: i64 = app.redis.get(&keys.remaining).await.expect("remaining");
    assert_eq!(remaining, 4, "one coupon taken");
    assert_eq!(hash(&app.redis, &keys.holders).await["bea"], "1");
    assert_eq!(hash(&app.redis, &keys.policy).await["issued"], "1");
    app.stop().await;
}

/// A coupon of `user` and an order of theirs to redeem it on: (coupon id, order id).
async fn coupon_and_order(app: &TestApp, user: &str) -> (String, String) {
    let policy_id = app.policy(json!({"total_quantity": 5})).await;
    let claim = app.claim(policy_id, user, &[]).await;
    assert_eq!(claim.status, StatusCode::CREATED, "{}", claim.json);
    let sale_id = app.sale(json!({"stock": 5, "price": 1000})).await;
    let order = app.purchase(sale_id, user, 1).await;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.json);
    (
        claim.json["coupon_id"].as_str().expect("coupon").to_owned(),
        order.json["order_id"].as_str().expect("order").to_owned(),
    )
}

#[tokio::test]
async fn a_redeem_run_twice_answers_redeemed_both_times_with_one_change() {
    let app = spawn_app().await;
    let scripts = Scripts::new();
    let (coupon_id, order_id) = coupon_and_order(&app, "cy").await;
    let policy_id: u64 = coupon_id.split('-').next().unwrap().parse().unwrap();
    let keys = policy_keys(&app, policy_id);
    let coupon_key = keys.coupon(&coupon_id);

    let (first, second) = twice(
        &app.redis,
        &scripts.redeem_coupon,
        vec![coupon_key.clone(), keys.outbox.clone()],
        vec![
            "cy".into(),
            order_id.as_str().into(),
            100.into(),
            "trace-1".into(),
            100_000.into(),
        ],
    )
    .await;

    assert_eq!(code(&first), "redeemed", "{first:?}");
    assert_eq!(
        first, second,
        "not `already_redeemed` to the call that redeemed it"
    );
    let coupon = hash(&app.redis, &coupon_key).await;
    assert_eq!(coupon["seq"], "2", "one change after the issue");
    assert_eq!(coupon["order_id"], order_id);

    // Another order is still refused.
    let other = once(
        &app.redis,
        &scripts.redeem_coupon,
        vec![coupon_key.clone(), keys.outbox.clone()],
        vec![
            "cy".into(),
            "1-another".into(),
            100.into(),
            "trace-2".into(),
            100_000.into(),
        ],
    )
    .await;
    assert_eq!(code(&other), "already_redeemed");
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_redemption_run_twice_answers_cancelled_both_times_with_one_change() {
    let app = spawn_app().await;
    let scripts = Scripts::new();
    let (coupon_id, order_id) = coupon_and_order(&app, "dee").await;
    let redeemed = app
        .coupon_action(
            &coupon_id,
            "redeem",
            "dee",
            Some(json!({ "order_id": order_id })),
        )
        .await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.json);
    let policy_id: u64 = coupon_id.split('-').next().unwrap().parse().unwrap();
    let keys = policy_keys(&app, policy_id);
    let coupon_key = keys.coupon(&coupon_id);
    let seq_before: u64 = hash(&app.redis, &coupon_key).await["seq"].parse().unwrap();
    let call = |call_id: &str| -> Vec<Value> {
        vec![
            "dee".into(),
            "trace-1".into(),
            100_000.into(),
            call_id.into(),
        ]
    };

    let (first, second) = twice(
        &app.redis,
        &scripts.cancel_redemption,
        vec![coupon_key.clone(), keys.outbox.clone()],
        call("call-1"),
    )
    .await;

    assert_eq!(code(&first), "cancelled", "{first:?}");
    assert_eq!(
        first, second,
        "not `not_redeemed` to the call that cancelled it"
    );
    let coupon = hash(&app.redis, &coupon_key).await;
    assert_eq!(coupon["status"], "issued");
    assert_eq!(coupon["seq"], (seq_before + 1).to_string(), "one change");

    // Another call finds nothing to cancel, as before.
    let other = once(
        &app.redis,
        &scripts.cancel_redemption,
        vec![coupon_key.clone(), keys.outbox.clone()],
        call("call-2"),
    )
    .await;
    assert_eq!(code(&other), "not_redeemed");
    app.stop().await;
}

/// A point cache of `user` holding `balance`, as a rebuild from MySQL leaves it.
async fn points_cache(app: &TestApp, user: &str, balance: i64) -> PointsKeys {
    let keys = PointsKeys::for_user(&app.settings.redis.key_prefix, user);
    let _: () = app
        .redis
        .hset(
            keys.balance(user),
            [("balance", balance), ("version", 1), ("pending", 0)],
        )
        .await
        .expect("HSET cache");
    keys
}

#[tokio::test]
async fn a_use_of_points_run_twice_takes_the_points_once_and_answers_the_same() {
    let app = spawn_app().await;
    let scripts = Scripts::new();
    let user = unique("eve");
    let keys = points_cache(&app, &user, 100).await;
    let txid = format!("use-{}", uuid::Uuid::now_v7().simple());

    let (first, second) = twice(
        &app.redis,
        &scripts.points_use,
        vec![
            keys.balance(&user),
            keys.use_record(&txid),
            keys.outbox.clone(),
        ],
        vec![
            user.as_str().into(),
            30.into(),
            txid.as_str().into(),
            "1-order".into(),
            "trace-1".into(),
            100_000.into(),
            3_600.into(),
            "amount=30;order_id=1-order".into(),
            3_600.into(),
        ],
    )
    .await;

    assert_eq!(code(&first), "used", "{first:?}");
    assert_eq!(first, second, "the second run answers as the first");
    let cache = hash(&app.redis, &keys.balance(&user)).await;
    assert_eq!(cache["balance"], "70", "30 points taken once");
    assert_eq!(cache["pending"], "30");
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_use_of_points_run_twice_gives_the_points_back_once_and_answers_the_same() {
    let app = spawn_app().await;
    let scripts = Scripts::new();
    let user = unique("fay");
    let keys = points_cache(&app, &user, 100).await;
    let txid = format!("use-{}", uuid::Uuid::now_v7().simple());
    let used = once(
        &app.redis,
        &scripts.points_use,
        vec![
            keys.balance(&user),
            keys.use_record(&txid),
            keys.outbox.clone(),
        ],
        vec![
            user.as_str().into(),
            30.into(),
            txid.as_str().into(),
            "1-order".into(),
            "trace-1".into(),
            100_000.into(),
            3_600.into(),
            "amount=30;order_id=1-order".into(),
            3_600.into(),
        ],
    )
    .await;
    assert_eq!(code(&used), "used", "{used:?}");
    let refund = flashgate_events::refund_txid(&txid).expect("refund txid");
    let call = |call_id: &str| -> Vec<Value> {
        vec![
            user.as_str().into(),
            txid.as_str().into(),
            refund.as_str().into(),
            "trace-2".into(),
            100_000.into(),
            3_600.into(),
            "".into(),
            "".into(),
            call_id.into(),
        ]
    };
    let cancel_keys = vec![
        keys.balance(&user),
        keys.use_record(&txid),
        keys.outbox.clone(),
    ];

    let (first, second) = twice(
        &app.redis,
        &scripts.points_cancel,
        cancel_keys.clone(),
        call("call-1"),
    )
    .await;

    assert_eq!(code(&first), "cancelled", "{first:?}");
    assert_eq!(first, second, "the second run answers as the first");
    let cache = hash(&app.redis, &keys.balance(&user)).await;
    assert_eq!(cache["balance"], "100", "30 points given back once");
    assert_eq!(cache["pending"], "0");
    let other = once(
        &app.redis,
        &scripts.points_cancel,
        cancel_keys,
        call("call-2"),
    )
    .await;
    assert_eq!(code(&other), "already_cancelled");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_whose_answer_was_lost_is_503_outcome_unknown_and_the_same_key_gets_its_answer()
{
    let redis = PrivateRedis::start().await;
    let app = spawn_app_with(|settings| {
        settings.redis.sentinels.clear();
        settings.redis.url = Some(format!("redis://127.0.0.1:{}", redis.port));
        settings.redis.command_timeout_ms = 300;
    })
    .await;
    let sale_id = app.sale(json!({"stock": 10, "per_user_limit": 1})).await;
    let key = [("idempotency-key", "lost-answer-1")];

    // The purchase is written to Redis, which answers only after the gateway gave up.
    let awake = redis.hang(1.5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lost = app
        .purchase_with(sale_id, "gus", json!({"quantity": 1}), &key)
        .await;
    awake.await.expect("the server woke up");

    assert_eq!(
        lost.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        lost.json
    );
    assert_eq!(lost.code(), "outcome_unknown", "{}", lost.json);
    assert!(lost.headers.contains_key("retry-after"));
    let message = lost.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("same Idempotency-Key"), "{message}");

    let retried = app
        .purchase_with(sale_id, "gus", json!({"quantity": 1}), &key)
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.json);
    let stock: i64 = app
        .redis
        .get(sale_keys(&app, sale_id).stock)
        .await
        .expect("stock");
    assert_eq!(stock, 9, "the lost purchase and its retry took one unit");
    app.stop().await;
}

#[tokio::test]
async fn users_whose_ids_and_keys_join_alike_get_their_own_answers() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 10, "per_user_limit": 1})).await;
    let user = unique("hal");
    let colon_user = format!("{user}:b");

    // `hal…` + `b:c` and `hal…:b` + `c` both joined to `idem:hal…:b:c` before.
    let first = app
        .purchase_with(
            sale_id,
            &user,
            json!({"quantity": 1}),
            &[("idempotency-key", "b:c")],
        )
        .await;
    let second = app
        .purchase_with(
            sale_id,
            &colon_user,
            json!({"quantity": 1}),
            &[("idempotency-key", "c")],
        )
        .await;

    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.json);
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.json);
    assert_ne!(
        first.json["order_id"], second.json["order_id"],
        "each user has an order of their own"
    );
    let stock: i64 = app
        .redis
        .get(sale_keys(&app, sale_id).stock)
        .await
        .expect("stock");
    assert_eq!(stock, 8);
    // And the second user's order is theirs to read.
    let token = app.token(&colon_user, Role::Shopper);
    let order_id = second.json["order_id"].as_str().expect("order id");
    let view = app
        .request(
            Method::GET,
            &format!("/v1/orders/{order_id}"),
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.json);
    app.stop().await;
}

#[tokio::test]
async fn a_replayed_sold_out_answer_does_not_mark_the_sale_sold_out_in_memory() {
    let app = spawn_app_with(|settings| settings.gateway.sold_out_cache_ms = 60_000).await;
    let sale_id = app.sale(json!({"stock": 1, "per_user_limit": 5})).await;
    let key = [("idempotency-key", "two-please")];

    let first = app
        .purchase_with(sale_id, "ida", json!({"quantity": 2}), &key)
        .await;
    let replayed = app
        .purchase_with(sale_id, "ida", json!({"quantity": 2}), &key)
        .await;

    assert_eq!(first.code(), "sold_out", "{}", first.json);
    let message = first.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("only 1 left"), "{message}");
    assert_eq!(replayed.status, StatusCode::CONFLICT, "{}", replayed.json);
    // One unit is left: a key-less purchase of one must reach Redis and get it.
    let one = app.purchase(sale_id, "jo", 1).await;
    assert_eq!(one.status, StatusCode::ACCEPTED, "{}", one.json);
    assert_eq!(
        replayed.json, first.json,
        "the stored answer, word for word"
    );
    app.stop().await;
}
