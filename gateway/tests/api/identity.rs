//! User ids are compared byte for byte everywhere: `Alice` is not `alice`, in MySQL too, so
//! neither can read the other's orders, coupons or points through the gateway.

use flashgate_gateway::auth::Role;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, unique};

async fn get(app: &TestApp, user: &str, path: &str) -> Value {
    let token = app.token(user, Role::Shopper);
    let reply = app
        .request(Method::GET, path, Some(&token), &[], None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.json);
    reply.json
}

fn count(list: &Value) -> usize {
    list.as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_cannot_read_orders_coupons_or_points_of_a_user_whose_id_differs_only_in_case() {
    // Arrange: alice's persisted order, coupon and points, as the persister stores them.
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 5})).await;
    let policy_id = app.policy(json!({})).await;
    let order_id = format!("{sale_id}-{}", unique("o"));
    sqlx::query(
        "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, status, \
         admitted_at) VALUES (?, ?, 'alice', 1, 1999, 1999, 'confirmed', UTC_TIMESTAMP(3))",
    )
    .bind(&order_id)
    .bind(sale_id)
    .execute(&app.db)
    .await
    .expect("order");
    sqlx::query(
        "INSERT INTO coupons (coupon_id, policy_id, user_id, claim_no, status, seq, issued_at, \
         expires_at) VALUES (?, ?, 'alice', 1, 'issued', 1, UTC_TIMESTAMP(3), \
         UTC_TIMESTAMP(3) + INTERVAL 1 DAY)",
    )
    .bind(format!("{policy_id}-{}", unique("c")))
    .bind(policy_id)
    .execute(&app.db)
    .await
    .expect("coupon");
    sqlx::query(
        "INSERT INTO point_ledger (txid, user_id, delta, reason) \
         VALUES ('adjust-alice', 'alice', 500, 'adjust')",
    )
    .execute(&app.db)
    .await
    .expect("ledger");
    sqlx::query("INSERT INTO point_balances (user_id, balance, version) VALUES ('alice', 500, 1)")
        .execute(&app.db)
        .await
        .expect("balance");

    // Act: `Alice` asks for her own things.
    let orders = get(&app, "Alice", "/v1/me/orders").await;
    let coupons = get(&app, "Alice", "/v1/me/coupons").await;
    let points = get(&app, "Alice", "/v1/me/points").await;
    let history = get(&app, "Alice", "/v1/me/points/history").await;
    let token = app.token("Alice", Role::Shopper);
    let order = app
        .request(
            Method::GET,
            &format!("/v1/orders/{order_id}"),
            Some(&token),
            &[],
            None,
        )
        .await;

    // Assert: none of alice's is hers; alice still sees all of it.
    assert_eq!(count(&orders["orders"]), 0, "{orders}");
    assert_eq!(count(&coupons["coupons"]), 0, "{coupons}");
    assert_eq!(points["balance"], 0, "{points}");
    assert_eq!(count(&history["entries"]), 0, "{history}");
    assert_eq!(order.status, StatusCode::NOT_FOUND);
    assert_eq!(
        count(&get(&app, "alice", "/v1/me/orders").await["orders"]),
        1
    );
    assert_eq!(
        count(&get(&app, "alice", "/v1/me/coupons").await["coupons"]),
        1
    );
    assert_eq!(get(&app, "alice", "/v1/me/points").await["balance"], 500);
    app.stop().await;
}
