//! The order lifecycle through the gateway: a shopper's cancel, a manager's cancel and
//! mark-paid, expiry by the sweeper, what each gives back (units, the buyer's count, coupons,
//! points), and the refusals, each with its JSON body.

use std::collections::HashMap;
use std::sync::Arc;

use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::{PolicyKeys, SaleKeys};
use fred::prelude::{HashesInterface, SortedSetsInterface};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    Reply, TestApp, eventually, points_balance, run_out_window, sale_counters, spawn_app,
    spawn_app_with, start,
};

/// `POST /v1/orders/{id}/cancel` as `user`, with extra headers.
async fn cancel(app: &TestApp, order_id: &str, user: &str, headers: &[(&str, &str)]) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::POST,
        &format!("/v1/orders/{order_id}/cancel"),
        Some(&token),
        headers,
        None,
    )
    .await
}

/// `POST /v1/admin/orders/{id}/{action}` as a manager.
async fn admin(app: &TestApp, order_id: &str, action: &str, body: Option<Value>) -> Reply {
    let token = app.token("manager-1", Role::Manager);
    app.request(
        Method::POST,
        &format!("/v1/admin/orders/{order_id}/{action}"),
        Some(&token),
        &[],
        body,
    )
    .await
}

/// `GET /v1/orders/{id}` as `user`.
async fn order(app: &TestApp, order_id: &str, user: &str) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::GET,
        &format!("/v1/orders/{order_id}"),
        Some(&token),
        &[],
        None,
    )
    .await
}

/// Buys `quantity` as `user` and returns the order id.
async fn buy(app: &TestApp, sale_id: u64, user: &str, quantity: u32) -> String {
    let reply = app.purchase(sale_id, user, quantity).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    reply.json["order_id"]
        .as_str()
        .expect("order id")
        .to_owned()
}

/// The sale's counters in Redis: (stock, held, paid, total); stock + held + paid = total
/// must hold at every moment.
async fn counters(app: &TestApp, sale_id: u64) -> (i64, i64, i64, i64) {
    let counted = sale_counters(app, sale_id).await;
    assert_eq!(
        counted.0 + counted.1 + counted.2,
        counted.3,
        "stock + held + paid = total: {counted:?}"
    );
    counted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_cancels_an_order_not_yet_in_mysql_and_the_unit_is_sold_again() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 1, "per_user_limit": 1})).await;
    let order_id = buy(&app, sale_id, "ann", 1).await;
    assert_eq!(counters(&app, sale_id).await, (0, 1, 0, 1));
    let sold_out = app.purchase(sale_id, "bob", 1).await;
    assert_eq!(sold_out.status, StatusCode::CONFLICT);
    assert_eq!(sold_out.code(), "sold_out");

    let cancelled = cancel(&app, &order_id, "ann", &[]).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.json);
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_eq!(cancelled.json["reason"], "cancelled_by_shopper");
    assert!(
        cancelled.json["cancelled_at"].is_string(),
        "{}",
        cancelled.json
    );
    assert!(cancelled.json["pay_by"].is_string(), "{}", cancelled.json);
    assert_eq!(counters(&app, sale_id).await, (1, 0, 0, 1));

    // A second cancel answers the same and gives nothing back again.
    let again = cancel(&app, &order_id, "ann", &[]).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json, cancelled.json);
    assert_eq!(counters(&app, sale_id).await, (1, 0, 0, 1));
    let seen = order(&app, &order_id, "ann").await;
    assert_eq!(seen.json["status"], "cancelled");

    // The unit is sold again, first come first served; Ann's count went down, so she may
    // buy again too (the sold-out memory was forgotten at once).
    let bob = app.purchase(sale_id, "bob", 1).await;
    assert_eq!(bob.status, StatusCode::ACCEPTED, "{}", bob.json);
    assert_eq!(counters(&app, sale_id).await, (0, 1, 0, 1));
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let ann_units: Option<i64> = app.redis.hget(&keys.buyers, "ann").await.expect("buyers");
    assert_eq!(ann_units, None, "ann holds nothing any more");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_keeps_its_units_until_a_cancel_is_refunded() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 3, "per_user_limit": 2})).await;
    let order_id = buy(&app, sale_id, "cyd", 2).await;

    // Someone else's order is not found, for a shopper.
    let stranger = cancel(&app, &order_id, "mallory", &[]).await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);
    assert_eq!(stranger.code(), "not_found");

    let paid = admin(&app, &order_id, "mark-paid", None).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.json);
    assert_eq!(paid.json["status"], "paid");
    assert_eq!(paid.json["reason"], "paid_outside_flashgate");
    assert!(paid.json["paid_at"].is_string());
    assert_eq!(counters(&app, sale_id).await, (1, 0, 2, 3));
    let again = admin(&app, &order_id, "mark-paid", None).await;
    assert_eq!((again.status, &again.json), (StatusCode::OK, &paid.json));

    // A cancel now asks for a refund (payments.rs follows it to the end): the units stay sold
    // until the refund went through.
    let refund = cancel(&app, &order_id, "cyd", &[]).await;
    assert_eq!(refund.status, StatusCode::ACCEPTED, "{}", refund.json);
    assert_eq!(refund.json["status"], "refund_pending");
    let paid_again = admin(&app, &order_id, "mark-paid", None).await;
    assert_eq!(
        paid_again.code(),
        "order_not_payable",
        "{}",
        paid_again.json
    );
    assert_eq!(counters(&app, sale_id).await, (1, 0, 2, 3), "still sold");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_cancels_with_a_reason_and_bad_requests_change_nothing() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 2, "per_user_limit": 2})).await;
    let order_id = buy(&app, sale_id, "dee", 2).await;

    for body in [
        None,
        Some(json!({})),
        Some(json!({"reason": ""})),
        Some(json!({"reason": "x".repeat(201)})),
        Some(json!({"reason": "two\nlines"})),
        Some(json!({"reason": "ok", "extra": 1})),
    ] {
        let refused = admin(&app, &order_id, "cancel", body.clone()).await;
        assert_eq!(
            refused.status.as_u16() / 100,
            4,
            "{body:?}: {}",
            refused.json
        );
        assert_ne!(refused.code(), "", "{body:?}");
    }
    let shopper = app.token("dee", Role::Shopper);
    let forbidden = app
        .request(
            Method::POST,
            &format!("/v1/admin/orders/{order_id}/cancel"),
            Some(&shopper),
            &[],
            Some(json!({"reason": "mine"})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        counters(&app, sale_id).await,
        (0, 2, 0, 2),
        "nothing given back"
    );
    let unknown = admin(&app, &format!("{sale_id}-nope"), "mark-paid", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let cancelled = admin(
        &app,
        &order_id,
        "cancel",
        Some(json!({"reason": "out of stock at the warehouse"})),
    )
    .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.json);
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_eq!(cancelled.json["reason"], "out of stock at the warehouse");
    assert_eq!(counters(&app, sale_id).await, (2, 0, 0, 2));
    let pay = admin(&app, &order_id, "mark-paid", None).await;
    assert_eq!(pay.status, StatusCode::CONFLICT);
    assert_eq!(pay.code(), "order_not_payable");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_not_paid_by_its_pay_by_expires_and_gives_its_unit_back() {
    let app = spawn_app().await;
    let sale_id = app
        .sale(json!({"stock": 1, "per_user_limit": 1, "payment_window_seconds": 30}))
        .await;
    let order_id = buy(&app, sale_id, "eve", 1).await;
    let reserved = order(&app, &order_id, "eve").await;
    assert_eq!(reserved.json["status"], "reserved");
    let admitted: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(reserved.json["admitted_at"].clone()).expect("admitted_at");
    let pay_by: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(reserved.json["pay_by"].clone()).expect("pay_by");
    assert_eq!(
        (pay_by - admitted).num_seconds(),
        30,
        "admission + the window"
    );

    run_out_window(&app, sale_id, &order_id).await;
    let expired =
        eventually(|| async { order(&app, &order_id, "eve").await.json["status"] == "expired" })
            .await;
    assert!(expired, "expired by the sweeper");
    let seen = order(&app, &order_id, "eve").await;
    assert_eq!(seen.json["reason"], "not_paid_in_time");
    assert!(seen.json["expired_at"].is_string());
    assert_eq!(counters(&app, sale_id).await, (1, 0, 0, 1));

    // Final: neither a cancel nor a payment changes it.
    let cancel_it = cancel(&app, &order_id, "eve", &[]).await;
    assert_eq!(cancel_it.code(), "order_not_cancellable");
    let pay_it = admin(&app, &order_id, "mark-paid", None).await;
    assert_eq!(pay_it.code(), "order_not_payable");
    buy(&app, sale_id, "fay", 1).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_after_pay_by_is_409_payment_window_closed() {
    // A sweeper that never comes round: the order is past its window but not expired yet.
    let app = spawn_app_with(|s| s.gateway.lifecycle_sweep_interval_ms = 3_600_000).await;
    let sale_id = app.sale(json!({"stock": 1})).await;
    let order_id = buy(&app, sale_id, "gus", 1).await;
    run_out_window(&app, sale_id, &order_id).await;
    let late = admin(&app, &order_id, "mark-paid", None).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.json);
    assert_eq!(late.code(), "payment_window_closed");
    assert_eq!(counters(&app, sale_id).await, (0, 1, 0, 1), "still held");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_window_is_checked_and_shown_with_the_sale() {
    let app = spawn_app().await;
    for window in [29, 86_401, -1] {
        let refused = app
            .create_sale(json!({"payment_window_seconds": window}))
            .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{window}: {}",
            refused.json
        );
        assert_eq!(refused.code(), "invalid_request");
    }
    let default = app.create_sale(json!({})).await;
    assert_eq!(default.json["payment_window_seconds"], 600);
    let chosen = app
        .create_sale(json!({"payment_window_seconds": 86_400}))
        .await;
    assert_eq!(chosen.status, StatusCode::CREATED);
    assert_eq!(chosen.json["payment_window_seconds"], 86_400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_names_one_cancel() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 2, "per_user_limit": 2})).await;
    let first = buy(&app, sale_id, "hal", 1).await;
    let second = buy(&app, sale_id, "hal", 1).await;
    let key = [("Idempotency-Key", "cancel-1")];
    let once = cancel(&app, &first, "hal", &key).await;
    assert_eq!(once.status, StatusCode::OK);
    let replay = cancel(&app, &first, "hal", &key).await;
    assert_eq!((replay.status, &replay.json), (StatusCode::OK, &once.json));
    let reused = cancel(&app, &second, "hal", &key).await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.json
    );
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(
        counters(&app, sale_id).await,
        (1, 1, 0, 2),
        "the second is still held"
    );
    let bad = cancel(&app, &second, "hal", &[("Idempotency-Key", "no spaces")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

/// A sale of 5 units at 1000, a coupon policy, and `ida` with 100 points, who buys one unit,
/// redeems her coupon on the order and spends 30 points on it: `(sale, policy, coupon, order)`.
async fn order_with_coupon_and_points(app: &TestApp) -> (u64, u64, String, String) {
    let sale_id = app
        .sale(json!({"stock": 5, "per_user_limit": 5, "price": 1000}))
        .await;
    let policy_id = app.policy(json!({})).await;
    let claimed = app.claim(policy_id, "ida", &[]).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.json);
    let coupon_id = claimed.json["coupon_id"]
        .as_str()
        .expect("coupon")
        .to_owned();
    app.grant_points("ida", 100).await;

    let order_id = buy(app, sale_id, "ida", 1).await;
    let redeemed = app
        .coupon_action(
            &coupon_id,
            "redeem",
            "ida",
            Some(json!({"order_id": order_id})),
        )
        .await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.json);
    let token = app.token("ida", Role::Shopper);
    let used = app
        .request(
            Method::POST,
            "/v1/me/points/use",
            Some(&token),
            &[],
            Some(json!({"amount": 30, "order_id": order_id})),
        )
        .await;
    assert_eq!(used.status.as_u16() / 100, 2, "{}", used.json);
    assert_eq!(points_balance(app, "ida").await, 70);
    (sale_id, policy_id, coupon_id, order_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_gives_its_coupon_and_points_back() {
    let app = spawn_app().await;
    let (sale_id, policy_id, coupon_id, order_id) = order_with_coupon_and_points(&app).await;

    let cancelled = cancel(&app, &order_id, "ida", &[]).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.json);
    assert_eq!(points_balance(&app, "ida").await, 100, "points given back");
    let coupon = PolicyKeys::new(&app.settings.redis.key_prefix, policy_id).coupon(&coupon_id);
    let status: String = app.redis.hget(&coupon, "status").await.expect("coupon");
    assert_eq!(status, "issued", "the coupon can be redeemed again");

    // Nothing new goes on the cancelled order; the coupon goes on another one.
    let on_cancelled = app
        .coupon_action(
            &coupon_id,
            "redeem",
            "ida",
            Some(json!({"order_id": order_id})),
        )
        .await;
    assert_eq!(
        on_cancelled.status,
        StatusCode::CONFLICT,
        "{}",
        on_cancelled.json
    );
    let next = buy(&app, sale_id, "ida", 1).await;
    let again = app
        .coupon_action(&coupon_id, "redeem", "ida", Some(json!({"order_id": next})))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);

    // The sweeper's own pass, once due, gives nothing back twice and clears the entry.
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let cleared = eventually(|| async {
        let left: u64 = app.redis.hlen(&keys.compensate).await.expect("compensate");
        left == 0
    })
    .await;
    assert!(cleared, "the give-back entry is removed once done");
    let discounts: HashMap<String, String> =
        app.redis.hgetall(&keys.discounts).await.expect("discounts");
    assert!(
        discounts
            .keys()
            .all(|field| !field.starts_with(order_id.as_str())),
        "the cancelled order's discount reservations are gone: {discounts:?}"
    );
    assert_eq!(points_balance(&app, "ida").await, 100);
    let status: String = app.redis.hget(&coupon, "status").await.expect("coupon");
    assert_eq!(status, "redeemed", "still on the new order");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_from_two_gateways_racing_expiry_give_the_units_back_once() {
    let app = spawn_app().await;
    let other = start(app.settings.clone(), app.db.clone()).await;
    let sale_id = app.sale(json!({"stock": 10, "per_user_limit": 10})).await;
    let mut orders = Vec::new();
    for _ in 0..5 {
        orders.push(buy(&app, sale_id, "jo", 2).await);
    }
    assert_eq!(counters(&app, sale_id).await, (0, 10, 0, 10));
    for order_id in &orders {
        run_out_window(&app, sale_id, order_id).await;
    }
    // Both gateways cancel every order while both sweepers expire them.
    let (app, other) = (Arc::new(app), Arc::new(other));
    let mut racing = tokio::task::JoinSet::new();
    for order_id in &orders {
        for gateway in [&app, &other] {
            let (gateway, order_id) = (gateway.clone(), order_id.clone());
            racing.spawn(async move { cancel(&gateway, &order_id, "jo", &[]).await });
        }
    }
    while let Some(reply) = racing.join_next().await {
        let reply = reply.expect("task");
        assert!(
            reply.status == StatusCode::OK || reply.code() == "order_not_cancellable",
            "{}",
            reply.json
        );
    }
    let ended = eventually(|| async {
        let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
        let held: u64 = app.redis.zcard(&keys.holds).await.expect("holds");
        held == 0
    })
    .await;
    assert!(ended);
    assert_eq!(
        counters(&app, sale_id).await,
        (10, 0, 0, 10),
        "each unit back once"
    );
    for gateway in [other, app] {
        Arc::into_inner(gateway)
            .expect("no task holds it")
            .stop()
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_order_gives_its_coupon_and_points_back_once_the_sweeper_is_due() {
    // A request timeout of 1 s: the sweeper's give-back is due 2 s after the end.
    let app = spawn_app_with(|s| s.gateway.request_timeout_ms = 1_000).await;
    let (sale_id, policy_id, coupon_id, order_id) = order_with_coupon_and_points(&app).await;
    run_out_window(&app, sale_id, &order_id).await;
    let expired =
        eventually(|| async { order(&app, &order_id, "ida").await.json["status"] == "expired" })
            .await;
    assert!(expired, "expired by the sweeper");
    let coupon = PolicyKeys::new(&app.settings.redis.key_prefix, policy_id).coupon(&coupon_id);
    let given_back = eventually(|| async {
        let status: String = app.redis.hget(&coupon, "status").await.expect("coupon");
        status == "issued" && points_balance(&app, "ida").await == 100
    })
    .await;
    assert!(
        given_back,
        "the coupon is issued again and the 30 points are back"
    );
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let cleared = eventually(|| async {
        let left: u64 = app.redis.hlen(&keys.compensate).await.expect("compensate");
        left == 0
    })
    .await;
    assert!(cleared, "the give-back entry is removed once done");
    assert_eq!(points_balance(&app, "ida").await, 100, "given back once");
    assert_eq!(counters(&app, sale_id).await, (5, 0, 0, 5));
    app.stop().await;
}
