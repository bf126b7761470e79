//! Every key of a sale has an owner: an ended sale whose orders are all final and stored leaves
//! Redis after the grace (and restore never brings it back), while a sale Redis lost with open
//! orders comes back from MySQL with those orders still held until their `pay_by`.

use std::time::Duration;

use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::{self, SaleKeys};
use fred::prelude::{HashesInterface, KeysInterface, SetsInterface, SortedSetsInterface};
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Reply, TestApp, eventually, sale_counters, spawn_app_with};

async fn post(app: &TestApp, path: &str, token: &str, body: Option<serde_json::Value>) -> Reply {
    app.request(Method::POST, path, Some(token), &[], body)
        .await
}

/// How many of the sale's keys (its hash tag) Redis holds, stored answers left out.
async fn sale_keys_left(app: &TestApp, sale_id: u64) -> usize {
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let mut left = 0;
    for key in &keys.lifecycle() {
        let exists: i64 = app.redis.exists(key).await.expect("EXISTS");
        left += usize::try_from(exists).unwrap_or_default();
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_sale_leaves_redis_once_its_orders_are_final_and_stored_and_stays_gone() {
    let app = spawn_app_with(|s| {
        s.gateway.sale_cleanup_grace_ms = 1_000;
        s.gateway.relay_retire_grace_ms = 1_000;
    })
    .await;
    let persister = app.start_persister().await;
    let ends_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let sale_id = app
        .sale(json!({"stock": 5, "per_user_limit": 2, "ends_at": ends_at.to_rfc3339()}))
        .await;
    let manager = app.token("manager-1", Role::Manager);
    let paid = app.purchase(sale_id, "kim", 1).await.json["order_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let open = app.purchase(sale_id, "lou", 2).await.json["order_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let reply = post(
        &app,
        &format!("/v1/admin/orders/{paid}/mark-paid"),
        &manager,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);

    // Past the end + the grace, an open order keeps the sale in Redis.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(
        sale_keys_left(&app, sale_id).await,
        6,
        "all but discounts and compensate"
    );
    let live: bool = app
        .redis
        .sismember(keys::live_sales(&app.settings.redis.key_prefix), sale_id)
        .await
        .expect("live");
    assert!(live);

    // Once it ends too and MySQL holds both ends, every key of the sale goes.
    let lou = app.token("lou", Role::Shopper);
    let reply = post(&app, &format!("/v1/orders/{open}/cancel"), &lou, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let gone = eventually(|| async { sale_keys_left(&app, sale_id).await == 0 }).await;
    assert!(gone, "{} keys left", sale_keys_left(&app, sale_id).await);
    let live: bool = app
        .redis
        .sismember(keys::live_sales(&app.settings.redis.key_prefix), sale_id)
        .await
        .expect("live");
    assert!(!live, "the sweeper's list forgot it");

    // MySQL keeps the record; restore does not bring the sale back.
    let restored = post(&app, "/v1/admin/sales/restore", &manager, None).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.json);
    assert_eq!(restored.json["restored"], 0, "{}", restored.json);
    assert_eq!(sale_keys_left(&app, sale_id).await, 0);
    let kim = app.token("kim", Role::Shopper);
    let order = app
        .request(
            Method::GET,
            &format!("/v1/orders/{paid}"),
            Some(&kim),
            &[],
            None,
        )
        .await;
    assert_eq!(order.json["status"], "paid", "{}", order.json);
    persister.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_redis_lost_comes_back_with_its_open_orders_held_until_pay_by() {
    let app = spawn_app_with(|_| {}).await;
    let persister = app.start_persister().await;
    let sale_id = app
        .sale(json!({"stock": 6, "per_user_limit": 2, "payment_window_seconds": 600}))
        .await;
    let manager = app.token("manager-1", Role::Manager);
    let mut orders = Vec::new();
    for user in ["mo", "ned", "oz"] {
        let reply = app.purchase(sale_id, user, 2).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
        orders.push((
            reply.json["order_id"].as_str().expect("id").to_owned(),
            user,
        ));
    }
    let (paid, _) = &orders[0];
    let reply = post(
        &app,
        &format!("/v1/admin/orders/{paid}/mark-paid"),
        &manager,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let stored = eventually(|| async {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT status FROM orders WHERE sale_id = ? ORDER BY status")
                .bind(sale_id)
                .fetch_all(&app.db)
                .await
                .expect("orders");
        rows.iter().map(|(s,)| s.as_str()).collect::<Vec<_>>() == ["confirmed", "confirmed", "paid"]
    })
    .await;
    assert!(stored, "MySQL holds two open orders and a paid one");
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let pay_by_before: f64 = app
        .redis
        .zscore(&keys.holds, orders[1].0.as_str())
        .await
        .expect("pay_by");

    // Redis loses the sale (a restart without data, a failover that lost it).
    for key in [
        &keys.sale,
        &keys.stock,
        &keys.buyers,
        &keys.orders,
        &keys.holds,
    ] {
        let _: i64 = app.redis.del(key).await.expect("DEL");
    }
    let restored = post(&app, "/v1/admin/sales/restore", &manager, None).await;
    assert_eq!(restored.json["restored"], 1, "{}", restored.json);
    assert_eq!(sale_counters(&app, sale_id).await, (0, 4, 2, 6));
    let pay_by_after: f64 = app
        .redis
        .zscore(&keys.holds, orders[1].0.as_str())
        .await
        .expect("pay_by");
    assert_eq!(pay_by_after, pay_by_before, "held until the same pay_by");
    let units: i64 = app.redis.hget(&keys.buyers, "ned").await.expect("buyers");
    assert_eq!(units, 2);

    // The restored orders end as before: a cancel gives its units back, once.
    let (cancelled, user) = &orders[1];
    let token = app.token(user, Role::Shopper);
    let reply = post(
        &app,
        &format!("/v1/orders/{cancelled}/cancel"),
        &token,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["status"], "cancelled");
    assert_eq!(sale_counters(&app, sale_id).await, (2, 2, 2, 6));
    let again = app.purchase(sale_id, "ned", 2).await;
    assert_eq!(
        again.status,
        StatusCode::ACCEPTED,
        "ned may buy again: {}",
        again.json
    );
    persister.stop().await;
    app.stop().await;
}
