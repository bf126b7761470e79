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

/// Starts a stopped Redis server of the stack again when dropped, so a failed assertion does
/// not leave the shared stack without it.
struct Restart(String);

impl Drop for Restart {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A second panic here would abort the run: try, and say so if it fails.
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh");
            let started = std::process::Command::new(script)
                .args(["start", self.0.as_str()])
                .status();
            if !started.is_ok_and(|s| s.success()) {
                eprintln!("could not start {} again: run scripts/stack.sh up", self.0);
            }
        } else {
            stack(&["start", &self.0]);
        }
    }
}

/// Consecutive admissions that show the gateway settled on the new primary.
const SETTLED_RUN: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_purchases_going_without_losing_acknowledged_stock() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 200, "per_user_limit": 1})).await;
    let mut admitted = 0;
    for i in 0..5 {
        assert_eq!(
            app.purchase(sale_id, &format!("pre-{i}"), 1).await.status,
            StatusCode::ACCEPTED
        );
        admitted += 1;
    }
    // Make sure the replica has those writes before the primary dies.
    let acknowledged: i64 = app
        .redis
        .custom(fred::cmd!("WAIT"), vec![1, 2000])
        .await
        .expect("WAIT");
    assert!(acknowledged >= 1, "no replica acknowledged the writes");
    let old_primary = primary_port(&app.redis).await;

    let server = format!("redis-{old_primary}");
    stack(&["stop", &server]);
    let restart = Restart(server);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut i, mut run) = (0, 0);
    while run < SETTLED_RUN {
        i += 1;
        let reply = app.purchase(sale_id, &format!("during-{i}"), 1).await;
        match reply.status {
            StatusCode::ACCEPTED => {
                admitted += 1;
                run += 1;
                continue;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(reply.headers.contains_key("retry-after"));
                run = 0;
            }
            other => panic!(
                "during the failover only 202 or 503 are fair, got {other}: {}",
                reply.json
            ),
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never settled on the new primary ({run} admitted in a row)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_primary = primary_port(&app.redis).await;
    drop(restart);

    assert_ne!(new_primary, old_primary, "Sentinel promoted the replica");
    let view = app.get_sale(sale_id).await;
    assert_eq!(view.json["remaining"], 200 - admitted, "{}", view.json);
    assert_eq!(view.json["admitted"], admitted);
    app.stop().await;
}
