//! The gateway's side of payments: `POST /v1/orders/{id}/payment` moves an open order to
//! `payment_pending` and hands the request to the saga's topic (no provider call in the
//! request), with the amount less its discounts; what it refuses; how long a pending order is
//! kept open; a paid order's cancel asking for a refund, finished by the `refunded` step.

use std::time::Duration;

use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::SaleKeys;
use flashgate_gateway::lifecycle::close::{self, Closing};
use fred::prelude::{HashesInterface, SortedSetsInterface};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    Reply, TestApp, consume_all, eventually, redis_now_ms, run_out_window, sale_counters,
    spawn_app_with,
};

/// A gateway whose payment requests go to a topic of its own, with a payments grace of
/// `grace_seconds`.
async fn app_with_grace(grace_seconds: u64) -> TestApp {
    let settings = crate::helpers::stack_settings();
    let topic = flashgate_testkit::fresh_topic(&settings, "flashgate.test-payments-", 1).await;
    spawn_app_with(move |settings| {
        settings.kafka.payments_topic = topic;
        settings.payments.grace_seconds = grace_seconds;
        settings.points.earn_basis_points = 0;
    })
    .await
}

/// `POST /v1/orders/{id}/payment` as `user`.
async fn pay(app: &TestApp, order_id: &str, user: &str, body: Value, key: Option<&str>) -> Reply {
    let token = app.token(user, Role::Shopper);
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    app.request(
        Method::POST,
        &format!("/v1/orders/{order_id}/payment"),
        Some(&token),
        &headers,
        Some(body),
    )
    .await
}

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

async fn buy(app: &TestApp, sale_id: u64, user: &str, quantity: u32) -> String {
    let reply = app.purchase(sale_id, user, quantity).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    reply.json["order_id"]
        .as_str()
        .expect("order id")
        .to_owned()
}

fn assert_refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (status, code),
        "{}",
        reply.json
    );
}

/// The requests on the app's payments topic.
fn requests(app: &TestApp, expected: usize) -> Vec<Value> {
    consume_all(
        &app.settings,
        &app.settings.kafka.payments_topic,
        expected,
        Duration::from_secs(20),
    )
    .into_iter()
    .map(|(_, payload, _)| payload)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_makes_the_order_pending_and_hands_one_request_to_the_saga_with_its_deadline() {
    let app = app_with_grace(60).await;
    let sale = app
        .sale(json!({ "price": 1_250, "stock": 5, "per_user_limit": 2 }))
        .await;
    let order_id = buy(&app, sale, "payer", 2).await;

    let first = pay(
        &app,
        &order_id,
        "payer",
        json!({"payment_token": "tok_ok"}),
        Some("p-1"),
    )
    .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.json);
    assert_eq!(first.json["status"], "payment_pending");
    assert_eq!(first.json["payment"]["status"], "pending");
    assert_eq!(first.json["payment"]["amount"], 2_500);
    assert_eq!(first.json["payment"]["attempts"], 0);
    // The same key again: the same answer; another request for the same order: refused.
    let again = pay(
        &app,
        &order_id,
        "payer",
        json!({"payment_token": "tok_ok"}),
        Some("p-1"),
    )
    .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.json);
    assert_eq!(again.json["status"], "payment_pending");
    let second = pay(
        &app,
        &order_id,
        "payer",
        json!({"payment_token": "tok_ok"}),
        None,
    )
    .await;
    assert_refused(&second, StatusCode::CONFLICT, "order_not_payable");
    let other_key = pay(
        &app,
        &order_id,
        "payer",
        json!({"payment_token": "tok_ok"}),
        Some("p-2"),
    )
    .await;
    assert_refused(&other_key, StatusCode::CONFLICT, "order_not_payable");

    let sent = requests(&app, 1);
    assert_eq!(sent.len(), 1, "one request for the saga: {sent:?}");
    let request = &sent[0];
    assert_eq!(request["type"], "payment.requested");
    assert_eq!(request["event_id"], format!("payment.requested:{order_id}"));
    assert_eq!(request["data"]["amount"], 2_500);
    assert_eq!(request["data"]["payment_token"], "tok_ok");
    assert_eq!(request["data"]["user_id"], "payer");
    let pay_by =
        chrono::DateTime::parse_from_rfc3339(request["data"]["pay_by"].as_str().unwrap()).unwrap();
    let give_up =
        chrono::DateTime::parse_from_rfc3339(request["data"]["give_up_at"].as_str().unwrap())
            .unwrap();
    assert_eq!((give_up - pay_by).num_seconds(), 60, "pay_by + the grace");
    // Units stay held while the charge is in flight.
    assert_eq!(sale_counters(&app, sale).await, (3, 2, 0, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payment_requests_are_4xx_and_change_nothing() {
    let app = app_with_grace(60).await;
    let sale = app.sale(json!({ "price": 100, "stock": 5 })).await;
    let order_id = buy(&app, sale, "owner", 1).await;
    let ok = json!({"payment_token": "tok_ok"});

    for body in [
        json!({"payment_token": ""}),
        json!({"payment_token": "tok ok"}),
        json!({"payment_token": "x".repeat(129)}),
        json!({"payment_token": 7}),
        json!({"token": "tok_ok"}),
        json!({"payment_token": "tok_ok", "amount": 1}),
    ] {
        let reply = pay(&app, &order_id, "owner", body.clone(), None).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.json
        );
    }
    assert_refused(
        &pay(&app, &order_id, "stranger", ok.clone(), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_refused(
        &pay(
            &app,
            &format!("{sale}-nosuchorder"),
            "owner",
            ok.clone(),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        order(&app, &order_id, "owner").await.json["status"],
        "reserved"
    );

    // Past its pay_by: the window is closed.
    run_out_window(&app, sale, &order_id).await;
    assert_refused(
        &pay(&app, &order_id, "owner", ok.clone(), None).await,
        StatusCode::CONFLICT,
        "payment_window_closed",
    );
    // Cancelled: nothing to pay.
    let cancelled_order = buy(&app, sale, "owner2", 1).await;
    let token = app.token("owner2", Role::Shopper);
    let cancel = app
        .request(
            Method::POST,
            &format!("/v1/orders/{cancelled_order}/cancel"),
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK);
    assert_refused(
        &pay(&app, &cancelled_order, "owner2", ok, None).await,
        StatusCode::CONFLICT,
        "order_not_payable",
    );
    assert!(
        consume_all(
            &app.settings,
            &app.settings.kafka.payments_topic,
            1,
            Duration::from_secs(3)
        )
        .is_empty(),
        "no request reached the saga"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charge_is_the_amount_less_its_discounts_and_a_fully_discounted_order_is_paid_at_once()
{
    let app = app_with_grace(60).await;
    let sale = app
        .sale(json!({ "price": 1_000, "stock": 5, "per_user_limit": 2 }))
        .await;
    app.grant_points("saver", 5_000).await;
    let token = app.token("saver", Role::Shopper);
    let use_points = |order: String, amount: u64| {
        let token = token.clone();
        let app = &app;
        async move {
            app.request(
                Method::POST,
                "/v1/me/points/use",
                Some(&token),
                &[],
                Some(json!({"amount": amount, "order_id": order})),
            )
            .await
        }
    };

    let partly = buy(&app, sale, "saver", 1).await;
    assert_eq!(
        use_points(partly.clone(), 300).await.status,
        StatusCode::CREATED
    );
    let reply = pay(
        &app,
        &partly,
        "saver",
        json!({"payment_token": "tok_ok"}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    assert_eq!(reply.json["payment"]["amount"], 700);
    // The amount is fixed once the payment started: no more discounts on the order.
    let late = use_points(partly.clone(), 100).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.json);
    assert_eq!(
        order(&app, &partly, "saver").await.json["payment"]["amount"],
        700
    );

    let fully = buy(&app, sale, "saver", 1).await;
    assert_eq!(
        use_points(fully.clone(), 1_000).await.status,
        StatusCode::CREATED
    );
    let reply = pay(
        &app,
        &fully,
        "saver",
        json!({"payment_token": "tok_ok"}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["status"], "paid");
    assert_eq!(reply.json["reason"], "nothing_to_charge");
    let sent = requests(&app, 1);
    assert_eq!(
        sent.len(),
        1,
        "only the order with something to charge: {sent:?}"
    );
    assert_eq!(sent[0]["data"]["order_id"], partly);
    assert_eq!(sent[0]["data"]["amount"], 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_payment_keeps_its_order_past_pay_by_until_the_grace_is_over() {
    let app = app_with_grace(2).await;
    let sale = app.sale(json!({ "price": 100, "stock": 3 })).await;
    let pending = buy(&app, sale, "waiting", 1).await;
    let unpaid = buy(&app, sale, "idle", 1).await;
    let reply = pay(
        &app,
        &pending,
        "waiting",
        json!({"payment_token": "tok_slow"}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);

    // Both windows run out now; the unpaid order expires, the pending one waits for the grace.
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale);
    let now = redis_now_ms(&app).await;
    run_out_window(&app, sale, &unpaid).await;
    let record: String = app.redis.hget(&keys.orders, &pending).await.unwrap();
    let mut lines: Vec<String> = record.split('\n').map(str::to_owned).collect();
    lines[3] = (now - 1).to_string();
    let _: () = app
        .redis
        .hset(&keys.orders, (pending.as_str(), lines.join("\n")))
        .await
        .unwrap();
    let _: () = app
        .redis
        .zadd(
            &keys.holds,
            None,
            None,
            false,
            false,
            ((now + 2_000) as f64, pending.as_str()),
        )
        .await
        .unwrap();

    assert!(
        eventually(|| async { order(&app, &unpaid, "idle").await.json["status"] == "expired" })
            .await
    );
    assert_eq!(
        order(&app, &pending, "waiting").await.json["status"],
        "payment_pending",
        "kept open while its charge may still land"
    );
    assert!(
        eventually(|| async { order(&app, &pending, "waiting").await.json["status"] == "expired" })
            .await
    );
    assert_eq!(sale_counters(&app, sale).await, (3, 0, 0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_cancelled_asks_for_one_refund_and_gives_everything_back_once_refunded() {
    let app = app_with_grace(60).await;
    let sale = app.sale(json!({ "price": 500, "stock": 2 })).await;
    let order_id = buy(&app, sale, "refundee", 1).await;
    let manager = app.token("m", Role::Manager);
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
    assert_eq!(sale_counters(&app, sale).await, (1, 0, 1, 2));

    let token = app.token("refundee", Role::Shopper);
    let cancel = || async {
        app.request(
            Method::POST,
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&token),
            &[],
            None,
        )
        .await
    };
    let first = cancel().await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.json);
    assert_eq!(first.json["status"], "refund_pending");
    assert_eq!(first.json["reason"], "cancelled_by_shopper");
    let second = cancel().await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.json);
    // The unit stays sold until the refund went through.
    assert_eq!(sale_counters(&app, sale).await, (1, 0, 1, 2));
    let sent = requests(&app, 1);
    assert_eq!(sent.len(), 1, "one refund request: {sent:?}");
    assert_eq!(sent[0]["type"], "payment.refund_requested");
    assert_eq!(sent[0]["data"]["reason"], "cancelled_by_shopper");

    // The saga's last step, twice: the unit comes back once.
    let scripts = flashgate_gateway::scripts::Scripts::new();
    let prefix = app.settings.redis.key_prefix.clone();
    let done = close::refunded(&app.redis, &scripts.order_close, &prefix, &order_id, "t", 0)
        .await
        .unwrap();
    assert!(
        matches!(done, Closing::Closed(ref r) if r.state == "cancelled"),
        "{done:?}"
    );
    let again = close::refunded(&app.redis, &scripts.order_close, &prefix, &order_id, "t", 0)
        .await
        .unwrap();
    assert!(matches!(again, Closing::Already(_)), "{again:?}");
    assert_eq!(sale_counters(&app, sale).await, (2, 0, 0, 2));
    let now = order(&app, &order_id, "refundee").await;
    assert_eq!(now.json["status"], "cancelled", "{}", now.json);
    // The shopper may buy again.
    buy(&app, sale, "refundee", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_cannot_cancel_a_paid_order_once_the_sale_is_over_but_a_manager_can() {
    let app = app_with_grace(60).await;
    let sale = app.sale(json!({ "price": 500, "stock": 2 })).await;
    let order_id = buy(&app, sale, "late", 1).await;
    let manager = app.token("m", Role::Manager);
    let admin = |action: &'static str, body: Option<Value>| {
        let manager = manager.clone();
        let app = &app;
        let order_id = order_id.clone();
        async move {
            app.request(
                Method::POST,
                &format!("/v1/admin/orders/{order_id}/{action}"),
                Some(&manager),
                &[],
                body,
            )
            .await
        }
    };
    assert_eq!(admin("mark-paid", None).await.status, StatusCode::OK);
    // The sale ends (by Redis's clock).
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale);
    let now = redis_now_ms(&app).await;
    let _: () = app
        .redis
        .hset(&keys.sale, ("ends_ms", (now - 1).to_string()))
        .await
        .unwrap();
    let token = app.token("late", Role::Shopper);
    let refused = app
        .request(
            Method::POST,
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_refused(&refused, StatusCode::CONFLICT, "order_not_cancellable");
    let by_manager = admin("cancel", Some(json!({"reason": "goodwill"}))).await;
    assert_eq!(
        by_manager.status,
        StatusCode::ACCEPTED,
        "{}",
        by_manager.json
    );
    assert_eq!(by_manager.json["status"], "refund_pending");
    assert_eq!(by_manager.json["reason"], "goodwill");
}
