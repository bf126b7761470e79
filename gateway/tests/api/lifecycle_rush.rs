//! The lifecycle under a rush, end to end with the real persister: 1,000 shoppers for 100
//! units; 40 orders paid, 30 cancelled by their shoppers, 30 left to expire; the 60 units that
//! came back are sold again to a second rush and paid. Redis and MySQL agree at the end, and
//! the stock reconciliation finds nothing to repair.

use std::sync::Arc;
use std::time::Duration;

use flashgate_gateway::auth::Role;
use http::{Method, StatusCode};
use serde_json::json;

use fred::prelude::StreamsInterface;

use crate::helpers::{TestApp, eventually, sale_counters, spawn_app};

/// Every shopper of `users` asks for one unit at once; the admitted orders, as (order, user).
async fn rush(app: &Arc<TestApp>, sale_id: u64, users: Vec<String>) -> Vec<(String, String)> {
    // At most 512 connections at once (see coupons.rs: thousands of connects in one instant
    // overflow a listener's accept queue on a busy machine).
    let open = Arc::new(tokio::sync::Semaphore::new(512));
    let mut tasks = tokio::task::JoinSet::new();
    for user in users {
        let (app, open) = (app.clone(), open.clone());
        tasks.spawn(async move {
            let _connection = open.acquire_owned().await.expect("semaphore");
            (app.purchase(sale_id, &user, 1).await, user)
        });
    }
    let mut admitted = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (reply, user) = done.expect("task");
        match reply.status {
            StatusCode::ACCEPTED => admitted.push((
                reply.json["order_id"].as_str().expect("id").to_owned(),
                user,
            )),
            StatusCode::CONFLICT => assert_eq!(reply.code(), "sold_out", "{}", reply.json),
            other => panic!("a rush is answered 202 or 409, got {other}: {}", reply.json),
        }
    }
    admitted
}

async fn end(app: &TestApp, path: String, token: &str) {
    let reply = app
        .request(Method::POST, &path, Some(token), &[], None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.json);
}

/// Redis's (stock, held, paid) of the sale; stock + held + paid = total is checked here.
async fn redis_counters(app: &TestApp, sale_id: u64, total: i64) -> (i64, i64, i64) {
    let (stock, held, paid, counted_total) = sale_counters(app, sale_id).await;
    assert_eq!(counted_total, total);
    assert_eq!(stock + held + paid, total, "{:?}", (stock, held, paid));
    assert!(
        stock >= 0 && held >= 0 && paid >= 0,
        "{:?}",
        (stock, held, paid)
    );
    (stock, held, paid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rush_then_paid_cancelled_and_expired_orders_then_a_second_rush_for_what_came_back() {
    let app = Arc::new(spawn_app().await);
    let persister = app.start_persister().await;
    let sale_id = app
        .sale(json!({"stock": 100, "per_user_limit": 1, "payment_window_seconds": 30}))
        .await;

    let first = rush(
        &app,
        sale_id,
        (0..1_000).map(|i| format!("a-{i}")).collect(),
    )
    .await;
    assert_eq!(first.len(), 100, "exactly the stock is admitted");
    assert_eq!(redis_counters(&app, sale_id, 100).await, (0, 100, 0));

    let manager = app.token("manager-1", Role::Manager);
    let (paid, rest) = first.split_at(40);
    let cancelled = &rest[..30]; // and the last 30 are left to expire
    for (order_id, _) in paid {
        end(
            &app,
            format!("/v1/admin/orders/{order_id}/mark-paid"),
            &manager,
        )
        .await;
    }
    for (order_id, user) in cancelled {
        let token = app.token(user, Role::Shopper);
        end(&app, format!("/v1/orders/{order_id}/cancel"), &token).await;
    }
    assert_eq!(redis_counters(&app, sale_id, 100).await, (30, 30, 40));

    // The 30 abandoned orders expire 30 s after their admission (a minute at most here).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while redis_counters(&app, sale_id, 100).await != (60, 0, 40) {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned orders never expired: {:?}",
            redis_counters(&app, sale_id, 100).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A second rush: exactly the 60 units that came back are sold again, and paid.
    let second = rush(&app, sale_id, (0..200).map(|i| format!("b-{i}")).collect()).await;
    assert_eq!(second.len(), 60);
    for (order_id, _) in &second {
        end(
            &app,
            format!("/v1/admin/orders/{order_id}/mark-paid"),
            &manager,
        )
        .await;
    }
    assert_eq!(redis_counters(&app, sale_id, 100).await, (0, 0, 100));

    // MySQL after the drain (the relay sent everything, the persister consumed it all): 100
    // units in paid orders, 30 cancelled, 30 expired, none open, sold 100.
    let outbox =
        flashgate_gateway::keys::SaleKeys::new(&app.settings.redis.key_prefix, sale_id).outbox;
    let relayed = eventually(|| async {
        let left: u64 = app.redis.xlen(&outbox).await.expect("outbox");
        left == 0
    })
    .await;
    assert!(relayed, "the relay sent every admission and end");
    let expected = [("cancelled", 30), ("expired", 30), ("paid", 100)];
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let by_status: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM orders WHERE sale_id = ? GROUP BY status ORDER BY status",
        )
        .bind(sale_id)
        .fetch_all(&app.db)
        .await
        .expect("statuses");
        let by_status: Vec<(&str, i64)> = by_status.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        if by_status == expected {
            break;
        }
        let parked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM parked_events")
            .fetch_one(&app.db)
            .await
            .expect("parked");
        assert!(
            std::time::Instant::now() < deadline,
            "MySQL never got there: {by_status:?}, {parked} parked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sold: u32 = sqlx::query_scalar("SELECT sold FROM sales WHERE sale_id = ?")
        .bind(sale_id)
        .fetch_one(&app.db)
        .await
        .expect("sold");
    assert_eq!(sold, 100, "sold = units in confirmed + paid orders");
    let history: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM order_history h JOIN orders o USING (order_id) WHERE o.sale_id = ?",
    )
    .bind(sale_id)
    .fetch_one(&app.db)
    .await
    .expect("history");
    assert_eq!(
        history,
        160 * 2,
        "each order's admission and end, once each"
    );

    let report = flashgate_batch::stock::run(
        &app.settings,
        &flashgate_batch::stock::Options {
            sales: vec![sale_id],
            settle: Duration::from_secs(10),
            ..Default::default()
        },
    )
    .await
    .expect("reconcile-stock");
    assert_eq!(report.exit_code, 0, "reconcile-stock is clean: {report:?}");
    persister.stop().await;
    Arc::into_inner(app).expect("tasks done").stop().await;
}
