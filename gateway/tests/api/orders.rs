//! From purchase to MySQL: the shopper's order moves from `reserved` to `confirmed` once the
//! persister has written it; only its owner can see it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_gateway::auth::Role;
use flashgate_persister::consumer::Persister;
use flashgate_persister::metrics::Metrics;
use http::{Method, StatusCode};
use serde_json::json;
use tokio::sync::watch;

use crate::helpers::{spawn_app, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_reserved_then_confirmed_and_only_its_owner_sees_it() {
    let app = spawn_app().await;
    let sale_id = app
        .sale(json!({"stock": 5, "per_user_limit": 2, "price": 900}))
        .await;
    let token = app.token("olivia", Role::Shopper);

    // Before any persister runs, the order is reserved.
    let reply = app.purchase(sale_id, "olivia", 2).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let status_url = reply.json["status_url"].as_str().expect("url").to_owned();
    let order_id = reply.json["order_id"].as_str().expect("id").to_owned();
    let reserved = app
        .request(Method::GET, &status_url, Some(&token), &[], None)
        .await;
    assert_eq!(reserved.status, StatusCode::OK, "{}", reserved.json);
    assert_eq!(reserved.json["status"], "reserved");
    assert_eq!(reserved.json["quantity"], 2);

    // Someone else, and an unknown id, get 404.
    let stranger = app.token("mallory", Role::Shopper);
    let other = app
        .request(Method::GET, &status_url, Some(&stranger), &[], None)
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let unknown = app
        .request(
            Method::GET,
            &format!("/v1/orders/{sale_id}-nope"),
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // The persister writes it: confirmed, with its amount, and counted in the sale.
    let mut settings = app.settings.clone();
    settings.kafka.consumer_group = unique("flashgate-test-persister-");
    let persister = Persister::new(settings, app.db.clone(), Arc::new(Metrics::default()))
        .await
        .expect("persister");
    let (stop, stopped) = watch::channel(false);
    let consuming = tokio::spawn(persister.run(stopped));
    let deadline = Instant::now() + Duration::from_secs(60);
    let confirmed = loop {
        let view = app
            .request(Method::GET, &status_url, Some(&token), &[], None)
            .await;
        if view.json["status"] == "confirmed" || Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(confirmed.json["status"], "confirmed", "{}", confirmed.json);
    assert_eq!(confirmed.json["amount"], 1800);
    assert_eq!(app.get_sale(sale_id).await.json["persisted"], 2);

    let mine = app
        .request(Method::GET, "/v1/me/orders", Some(&token), &[], None)
        .await;
    assert_eq!(mine.json["orders"][0]["order_id"], order_id.as_str());
    let theirs = app
        .request(Method::GET, "/v1/me/orders", Some(&stranger), &[], None)
        .await;
    assert_eq!(theirs.json["orders"].as_array().map(Vec::len), Some(0));

    let _ = stop.send(true);
    consuming.await.expect("task").expect("clean stop");
    app.stop().await;
}
