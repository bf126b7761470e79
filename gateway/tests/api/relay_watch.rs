//! Which outboxes the relay watches: an outbox leaves the watch list only when it is empty and
//! its sale is over by Redis's clock plus a grace period; a non-empty outbox found outside the
//! list is put back; a consumer group Redis lost is made again without stopping the others.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use flashgate_gateway::auth::Role;
use fred::prelude::{HashesInterface, KeysInterface, SetsInterface};
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, consume_all, order_of_message, redis_now_ms, spawn_app_with};

fn active_set(app: &TestApp) -> String {
    flashgate_gateway::keys::active_outboxes(&app.settings.redis.key_prefix)
}

fn outbox_of(app: &TestApp, sale_id: u64) -> String {
    flashgate_gateway::keys::SaleKeys::new(&app.settings.redis.key_prefix, sale_id).outbox
}

/// `flashgate_relay_outbox_events_total{event=...}` from `/metrics`.
async fn relay_events(app: &TestApp, event: &str) -> u64 {
    let metrics = app.request(Method::GET, "/metrics", None, &[], None).await;
    let prefix = format!("flashgate_relay_outbox_events_total{{event=\"{event}\"}} ");
    std::str::from_utf8(&metrics.bytes)
        .expect("text")
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.trim().parse().expect("number"))
}

async fn order_keys(app: &TestApp, expected: usize) -> HashSet<String> {
    let settings = app.settings.clone();
    let topic = settings.kafka.orders_topic.clone();
    tokio::task::spawn_blocking(move || {
        consume_all(&settings, &topic, expected, Duration::from_secs(30))
    })
    .await
    .expect("reader")
    .iter()
    .map(order_of_message)
    .collect()
}

fn order_id(reply: &crate::helpers::Reply) -> String {
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    reply.json["order_id"]
        .as_str()
        .expect("order id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_is_watched_until_its_sale_is_over_by_redis_clock_plus_the_grace() {
    let grace_ms = 4_000;
    let app = spawn_app_with(|s| s.gateway.relay_retire_grace_ms = grace_ms).await;
    let ends_at = chrono::Utc::now() + chrono::Duration::milliseconds(2_000);
    let sale_id = app
        .sale(json!({"stock": 5, "ends_at": ends_at.to_rfc3339()}))
        .await;
    let ordered = order_id(&app.purchase(sale_id, "last-minute", 1).await);
    let outbox = outbox_of(&app, sale_id);
    let sale_key =
        flashgate_gateway::keys::SaleKeys::new(&app.settings.redis.key_prefix, sale_id).sale;
    let ends_ms: i64 = app.redis.hget(&sale_key, "ends_ms").await.expect("ends_ms");

    // Past the end + the grace, the open order may still end (and append its end): watched.
    while redis_now_ms(&app).await < ends_ms + grace_ms as i64 + 500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let watched: bool = app
        .redis
        .sismember(active_set(&app), &outbox)
        .await
        .expect("SISMEMBER");
    assert!(
        watched,
        "an outbox whose sale holds an open order stays watched"
    );
    let manager = app.token("manager-1", Role::Manager);
    let paid = app
        .request(
            Method::POST,
            &format!("/v1/admin/orders/{ordered}/mark-paid"),
            Some(&manager),
            &[],
            None,
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.json);

    let deadline = Instant::now() + Duration::from_secs(20);
    let retired_at = loop {
        let watched: bool = app
            .redis
            .sismember(active_set(&app), &outbox)
            .await
            .expect("SISMEMBER");
        if !watched {
            break redis_now_ms(&app).await;
        }
        assert!(Instant::now() < deadline, "the outbox was never retired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert!(
        retired_at >= ends_ms + grace_ms as i64,
        "retired at {retired_at}, before the end {ends_ms} + grace {grace_ms} by Redis's clock"
    );
    assert_eq!(order_keys(&app, 1).await, HashSet::from([ordered]));
    assert!(relay_events(&app, "retired").await >= 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_outbox_is_watched_until_its_coupons_can_no_longer_change_plus_the_grace() {
    let grace_ms = 2_000;
    let app = spawn_app_with(|s| s.gateway.relay_retire_grace_ms = grace_ms).await;
    let now = chrono::Utc::now();
    let policy_id = app
        .policy(json!({
            "claim_ends_at": (now + chrono::Duration::milliseconds(1_500)).to_rfc3339(),
            "valid_for_seconds": 1,
        }))
        .await;
    let claimed = app.claim(policy_id, "late-claimer", &[]).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.json);
    let keys = flashgate_gateway::keys::PolicyKeys::new(&app.settings.redis.key_prefix, policy_id);
    let until_ms: i64 = app
        .redis
        .hget(&keys.policy, "redeem_until_ms")
        .await
        .expect("redeem_until_ms");
    let watched: bool = app
        .redis
        .sismember(active_set(&app), &keys.outbox)
        .await
        .expect("SISMEMBER");
    assert!(
        watched,
        "the claim put the policy's outbox in the watch list"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let retired_at = loop {
        let watched: bool = app
            .redis
            .sismember(active_set(&app), &keys.outbox)
            .await
            .expect("SISMEMBER");
        if !watched {
            break redis_now_ms(&app).await;
        }
        assert!(Instant::now() < deadline, "the outbox was never retired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert!(
        retired_at >= until_ms + grace_ms as i64,
        "retired at {retired_at}, before its coupons' last change {until_ms} + grace {grace_ms}"
    );
    let settings = app.settings.clone();
    let topic = settings.kafka.coupons_topic.clone();
    let sent = tokio::task::spawn_blocking(move || {
        consume_all(&settings, &topic, 1, Duration::from_secs(30))
    })
    .await
    .expect("reader");
    assert_eq!(
        sent.len(),
        1,
        "the claim was relayed before the outbox was retired"
    );
    assert!(relay_events(&app, "retired").await >= 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_empty_outbox_outside_the_watch_list_is_found_and_relayed() {
    let app = spawn_app_with(|s| s.gateway.relay_sweep_interval_ms = 300).await;
    let sale_id = app.sale(json!({"stock": 5})).await;
    let outbox = outbox_of(&app, sale_id);
    // The state a lost registration leaves: the outbox is not in the set.
    let _: i64 = app
        .redis
        .srem(active_set(&app), &outbox)
        .await
        .expect("SREM");
    // Past the relay's 1 s refresh of its list, so it no longer reads the outbox by habit.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let ordered = order_id(&app.purchase(sale_id, "unwatched", 1).await);

    assert_eq!(order_keys(&app, 1).await, HashSet::from([ordered]));
    let watched: bool = app
        .redis
        .sismember(active_set(&app), &outbox)
        .await
        .expect("SISMEMBER");
    assert!(watched, "the sweep put the outbox back in the watch list");
    assert!(relay_events(&app, "rediscovered").await >= 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_consumer_group_is_made_again_and_other_outboxes_keep_moving() {
    let app = spawn_app_with(|_| {}).await;
    // `first` sorts before `second` in the relay's list, so its failure comes first.
    let first = app.sale(json!({"stock": 5})).await;
    let second = app.sale(json!({"stock": 5})).await;
    let mut ordered = HashSet::new();
    ordered.insert(order_id(&app.purchase(first, "before-a", 1).await));
    ordered.insert(order_id(&app.purchase(second, "before-b", 1).await));
    assert_eq!(order_keys(&app, 2).await, ordered);

    // Redis loses the first outbox with its group (as after a restart without data); the
    // next admission makes the stream again, without the relay's group.
    let _: i64 = app.redis.del(outbox_of(&app, first)).await.expect("DEL");
    ordered.insert(order_id(&app.purchase(first, "after-a", 1).await));
    ordered.insert(order_id(&app.purchase(second, "after-b", 1).await));

    assert_eq!(
        order_keys(&app, 4).await,
        ordered,
        "every order reached Kafka"
    );
    assert!(relay_events(&app, "group_recreated").await >= 1);
    app.stop().await;
}
