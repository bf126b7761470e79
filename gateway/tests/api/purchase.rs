//! Purchases: the answers shoppers rely on, under concurrency, with idempotency keys, and
//! after Redis lost its script cache.

use std::sync::Arc;

use flashgate_gateway::auth::Role;
use fred::prelude::KeysInterface;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, shopper_counts, spawn_app, spawn_app_with};

async fn stock(app: &TestApp, sale_id: u64) -> i64 {
    let key = format!("{}:{{s:{sale_id}}}:stock", app.settings.redis.key_prefix);
    app.redis.get(key).await.expect("GET stock")
}

#[tokio::test]
async fn an_admitted_purchase_returns_202_with_an_order_and_takes_stock() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 5, "per_user_limit": 3})).await;

    let reply = app.purchase(sale_id, "alice", 2).await;

    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    let order_id = reply.json["order_id"].as_str().expect("order_id");
    assert!(order_id.starts_with(&format!("{sale_id}-")), "{order_id}");
    assert_eq!(reply.json["status"], "reserved");
    assert_eq!(reply.json["quantity"], 2);
    assert_eq!(reply.json["status_url"], format!("/v1/orders/{order_id}"));
    assert!(reply.headers.contains_key("x-request-id"));
    assert_eq!(stock(&app, sale_id).await, 3);
    app.stop().await;
}

#[tokio::test]
async fn business_refusals_are_409_with_their_codes() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 3, "per_user_limit": 2})).await;
    assert_eq!(
        app.purchase(sale_id, "a", 2).await.status,
        StatusCode::ACCEPTED
    );

    let over_limit = app.purchase(sale_id, "a", 1).await;
    assert_eq!(
        (over_limit.status, over_limit.code()),
        (StatusCode::CONFLICT, "limit_exceeded")
    );
    let too_many = app.purchase(sale_id, "b", 2).await;
    assert_eq!(
        (too_many.status, too_many.code()),
        (StatusCode::CONFLICT, "sold_out")
    );
    assert_eq!(
        app.purchase(sale_id, "b", 1).await.status,
        StatusCode::ACCEPTED
    );
    let sold_out = app.purchase(sale_id, "c", 1).await;
    assert_eq!(
        (sold_out.status, sold_out.code()),
        (StatusCode::CONFLICT, "sold_out")
    );

    let later = app
        .sale(json!({
            "starts_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            "ends_at": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339(),
        }))
        .await;
    let early = app.purchase(later, "d", 1).await;
    assert_eq!(
        (early.status, early.code()),
        (StatusCode::CONFLICT, "sale_not_active")
    );
    assert_eq!(
        stock(&app, later).await,
        10,
        "a purchase before the opening touches no stock"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_json_errors_and_change_nothing() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 10, "per_user_limit": 10})).await;
    // (body, extra headers, status, error code, a word the message must contain)
    type Case = (
        Value,
        Vec<(&'static str, &'static str)>,
        StatusCode,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            json!({"quantity": 0}),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "quantity",
        ),
        (
            json!({"quantity": "two"}),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "quantity",
        ),
        (
            json!({"quantity": 1, "x": 1}),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "x",
        ),
        (
            json!({}),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "quantity",
        ),
        (
            Value::String("{not json".into()),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "JSON",
        ),
        (
            json!({"quantity": 1}),
            vec![("content-type", "text/plain")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "application/json",
        ),
        (
            json!({"quantity": 1}),
            vec![("idempotency-key", "has space")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Idempotency-Key",
        ),
        (
            Value::String(format!(
                "{{\"quantity\":1,\"pad\":\"{}\"}}",
                "x".repeat(20_000)
            )),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "bytes",
        ),
    ];
    for (body, headers, status, code, mentions) in cases {
        let reply = app
            .purchase_with(sale_id, "u", body.clone(), &headers)
            .await;
        assert_eq!(reply.status, status, "{body}: {}", reply.json);
        assert_eq!(reply.code(), code, "{body}");
        let message = reply.json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{body}: {message}");
    }
    let unknown = app.purchase(sale_id + 1000, "u", 1).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let not_a_number = app.purchase_with(0, "u", json!({"quantity": 1}), &[]).await;
    assert_eq!(not_a_number.status, StatusCode::NOT_FOUND);
    let token = app.token("u", Role::Shopper);
    let no_route = app
        .request(Method::GET, "/v1/nope", Some(&token), &[], None)
        .await;
    assert_eq!(
        (no_route.status, no_route.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert_eq!(stock(&app, sale_id).await, 10, "nothing changed");
    app.stop().await;
}

#[tokio::test]
async fn two_thousand_concurrent_buyers_for_one_hundred_units_never_oversell() {
    let app = Arc::new(spawn_app().await);
    let sale_id = app.sale(json!({"stock": 100, "per_user_limit": 1})).await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2_000 {
        let app = app.clone();
        tasks.spawn(async move { app.purchase(sale_id, &format!("buyer-{i}"), 1).await });
    }
    let mut admitted = 0;
    let mut sold_out = 0;
    let mut order_ids = std::collections::HashSet::new();
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.expect("task");
        match reply.status {
            StatusCode::ACCEPTED => {
                admitted += 1;
                order_ids.insert(reply.json["order_id"].as_str().expect("id").to_owned());
            }
            StatusCode::CONFLICT if reply.code() == "sold_out" => sold_out += 1,
            other => panic!("unexpected {other}: {}", reply.json),
        }
    }

    assert_eq!(admitted, 100);
    assert_eq!(sold_out, 1_900);
    assert_eq!(order_ids.len(), 100, "order ids are unique");
    assert_eq!(stock(&app, sale_id).await, 0);
    let buyers_key = format!("{}:{{s:{sale_id}}}:buyers", app.settings.redis.key_prefix);
    let buyers = shopper_counts(&app, &buyers_key).await;
    assert_eq!(buyers.len(), 100);
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test]
async fn the_managers_view_of_a_sale_adds_up_to_its_stock_even_mid_rush() {
    // remaining + admitted is the stock at every instant; a view that read the two apart
    // could straddle an admission and show one unit twice or not at all.
    let app = Arc::new(spawn_app().await);
    let stock = 1_500;
    let sale_id = app.sale(json!({"stock": stock, "per_user_limit": 1})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..stock {
        let app = app.clone();
        tasks.spawn(async move { app.purchase(sale_id, &format!("buyer-{i}"), 1).await });
    }
    let mut views = 0;
    let mut off = Vec::new();
    while !tasks.is_empty() {
        let view = app.get_sale(sale_id).await.json;
        let (remaining, admitted) = (view["remaining"].as_i64(), view["admitted"].as_i64());
        views += 1;
        if remaining.zip(admitted).map(|(r, a)| r + a) != Some(stock) {
            off.push(view);
        }
        while let Some(done) = tasks.try_join_next() {
            assert_eq!(done.expect("task").status, StatusCode::ACCEPTED);
        }
    }
    assert!(
        off.is_empty(),
        "{} of {views} views did not add up: {off:?}",
        off.len()
    );
    let view = app.get_sale(sale_id).await.json;
    assert_eq!(
        (view["remaining"].as_i64(), view["admitted"].as_i64()),
        (Some(0), Some(stock))
    );
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test]
async fn one_shopper_firing_fifty_parallel_purchases_gets_exactly_the_limit() {
    let app = Arc::new(spawn_app().await);
    let sale_id = app.sale(json!({"stock": 100, "per_user_limit": 2})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let app = app.clone();
        tasks.spawn(async move { app.purchase(sale_id, "greedy", 1).await });
    }
    let mut admitted = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.expect("task");
        match reply.status {
            StatusCode::ACCEPTED => admitted += 1,
            StatusCode::CONFLICT => assert_eq!(reply.code(), "limit_exceeded"),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 2);
    assert_eq!(stock(&app, sale_id).await, 98);
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_replays_the_answer_and_another_body_gets_422() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 1, "per_user_limit": 1})).await;
    let key = [("idempotency-key", "order-attempt-1")];

    let first = app
        .purchase_with(sale_id, "ann", json!({"quantity": 1}), &key)
        .await;
    let again = app
        .purchase_with(sale_id, "ann", json!({"quantity": 1}), &key)
        .await;
    let other_body = app
        .purchase_with(sale_id, "ann", json!({"quantity": 2}), &key)
        .await;
    // Another shopper's same key is another key.
    let other_user = app
        .purchase_with(sale_id, "bob", json!({"quantity": 1}), &key)
        .await;

    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(again.status, first.status);
    assert_eq!(again.bytes, first.bytes, "byte-identical replay");
    assert_eq!(other_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other_body.code(), "idempotency_key_reused");
    assert_eq!(other_user.code(), "sold_out");
    assert_eq!(stock(&app, sale_id).await, 0, "the replay took no stock");
    app.stop().await;
}

#[tokio::test]
async fn a_sold_out_sale_is_answered_from_memory() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 1})).await;
    assert_eq!(
        app.purchase(sale_id, "first", 1).await.status,
        StatusCode::ACCEPTED
    );
    for i in 0..5 {
        let reply = app.purchase(sale_id, &format!("late-{i}"), 1).await;
        assert_eq!(reply.code(), "sold_out");
    }
    assert_eq!(sold_out_from_memory(&app).await, 5);
    app.stop().await;
}

/// `flashgate_sold_out_from_memory_total` from `/metrics`.
async fn sold_out_from_memory(app: &crate::helpers::TestApp) -> u64 {
    app.metric("flashgate_sold_out_from_memory_total ")
        .await
        .expect("flashgate_sold_out_from_memory_total in /metrics")
}

#[tokio::test]
async fn a_full_outbox_gets_503_overloaded_with_retry_after() {
    // A broker that is not there: nothing leaves the outbox.
    let app = spawn_app_with(|s| {
        s.kafka.brokers = "127.0.0.1:1".into();
        s.kafka.message_timeout_ms = 1_000;
        s.gateway.outbox_max_len = 2;
        s.gateway.shutdown_grace_ms = 3_000;
    })
    .await;
    let sale_id = app.sale(json!({"stock": 10, "per_user_limit": 10})).await;
    assert_eq!(
        app.purchase(sale_id, "u", 1).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.purchase(sale_id, "u", 1).await.status,
        StatusCode::ACCEPTED
    );

    let refused = app.purchase(sale_id, "u", 1).await;

    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.json
    );
    assert_eq!(refused.code(), "overloaded");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(stock(&app, sale_id).await, 8, "the refusal took no stock");
    let ready = app.request(Method::GET, "/readyz", None, &[], None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["kafka"], false);
    app.stop().await;
}

#[tokio::test]
async fn a_restock_message_clears_the_sold_out_memory_at_once() {
    use fred::prelude::PubsubInterface;
    // Memory that would otherwise last a minute: only the message can clear it in time.
    let app = crate::helpers::spawn_app_with(|s| s.gateway.sold_out_cache_ms = 60_000).await;
    let sale_id = app.sale(json!({"stock": 1})).await;
    assert_eq!(
        app.purchase(sale_id, "first", 1).await.status,
        StatusCode::ACCEPTED
    );
    // The admission that took the last unit set the memory: refusals come from it.
    assert_eq!(app.purchase(sale_id, "second", 1).await.code(), "sold_out");
    assert_eq!(app.purchase(sale_id, "second", 1).await.code(), "sold_out");
    assert_eq!(sold_out_from_memory(&app).await, 2);

    // Stock comes back (as a cancellation will do) and is announced.
    let prefix = app.settings.redis.key_prefix.clone();
    let _: i64 = app
        .redis
        .incr(format!("{prefix}:{{s:{sale_id}}}:stock"))
        .await
        .expect("INCR");
    let receivers: i64 = app
        .redis
        .next()
        .publish(format!("{prefix}:restock"), sale_id)
        .await
        .expect("PUBLISH");
    assert_eq!(receivers, 1, "the gateway listens to the restock channel");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let reply = loop {
        let reply = app.purchase(sale_id, "third", 1).await;
        if reply.status == StatusCode::ACCEPTED || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    app.stop().await;
}
