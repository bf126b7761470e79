//! A Redis primary dies: Sentinel promotes the replica and the gateway follows by itself.
//!
//! This test stops the shared stack's primary, so `scripts/test.sh` runs it alone, after
//! every other test (it lives in a module named `disruptive`).

use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, Pool};
use http::StatusCode;
use serde_json::json;

use flashgate_testkit::stack;

use crate::helpers::spawn_app;

async fn primary_port(redis: &Pool) -> u16 {
    let info: String = redis
        .custom(fred::cmd!("INFO"), vec!["server"])
        .await
        .expect("INFO server");
    info.lines()
        .find_map(|l| l.strip_prefix("tcp_port:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("tcp_port in INFO")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_purchases_going_without_losing_acknowledged_stock() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 50, "per_user_limit": 1})).await;
    let mut admitted = 0;
    for i in 0..5 {
        assert_eq!(
            app.purchase(sale_id, &format!("pre-{i}"), 1).await.status,
            StatusCode::ACCEPTED
        );
        admitted += 1;
    }
    // Make sure the replica has those writes before the primary dies.
    let _: i64 = app
        .redis
        .custom(fred::cmd!("WAIT"), vec![1, 2000])
        .await
        .expect("WAIT");
    let old_primary = primary_port(&app.redis).await;

    stack(&["stop", &format!("redis-{old_primary}")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    loop {
        i += 1;
        let reply = app.purchase(sale_id, &format!("during-{i}"), 1).await;
        match reply.status {
            StatusCode::ACCEPTED => {
                admitted += 1;
                break;
            }
            StatusCode::SERVICE_UNAVAILABLE => assert!(reply.headers.contains_key("retry-after")),
            other => panic!(
                "during the failover only 202 or 503 are fair, got {other}: {}",
                reply.json
            ),
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never reached the new primary"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_primary = primary_port(&app.redis).await;
    stack(&["start", &format!("redis-{old_primary}")]);

    assert_ne!(new_primary, old_primary, "Sentinel promoted the replica");
    let view = app.get_sale(sale_id).await;
    assert_eq!(view.json["remaining"], 50 - admitted, "{}", view.json);
    assert_eq!(view.json["admitted"], admitted);
    app.stop().await;
}
