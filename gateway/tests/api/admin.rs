//! The manager API: create, read with live counters, list with a cursor, restore.

use flashgate_gateway::auth::Role;
use fred::prelude::KeysInterface;
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, start};

#[tokio::test]
async fn a_manager_creates_a_sale_and_reads_its_live_counters() {
    let app = spawn_app().await;

    let created = app
        .create_sale(json!({"stock": 5, "per_user_limit": 2, "price": 1250}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let sale_id = created.json["sale_id"].as_u64().expect("sale_id");
    assert_eq!(created.json["stock"], 5);
    assert_eq!(created.json["remaining"], 5);

    assert_eq!(
        app.purchase(sale_id, "u1", 2).await.status,
        StatusCode::ACCEPTED
    );
    let view = app.get_sale(sale_id).await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.json["remaining"], 3);
    assert_eq!(view.json["admitted"], 2);
    assert_eq!(view.json["price"], 1250);

    let row: (u32, u64) = sqlx::query_as("SELECT total, price FROM sales WHERE sale_id = ?")
        .bind(sale_id)
        .fetch_one(&app.db)
        .await
        .expect("sale stored in MySQL");
    assert_eq!(row, (5, 1250));
    app.stop().await;
}

#[tokio::test]
async fn invalid_sales_are_refused_with_the_field_named_and_nothing_stored() {
    let app = spawn_app().await;
    for (overrides, field) in [
        (json!({"stock": 0}), "stock"),
        (json!({"per_user_limit": 0}), "per_user_limit"),
        (json!({"sku": ""}), "sku"),
        (json!({"ends_at": "2020-01-01T00:00:00Z"}), "ends_at"),
        (json!({"starts_at": "yesterday"}), "starts_at"),
        (json!({"price": -1}), "price"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let reply = app.create_sale(overrides.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{overrides}: {}",
            reply.json
        );
        assert_eq!(reply.code(), "invalid_request");
        let message = reply.json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{overrides}: {message}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sales")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, 0);
    app.stop().await;
}

#[tokio::test]
async fn sales_are_listed_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.sale(json!({})).await);
    }
    let token = app.token("m", Role::Manager);
    let first = app
        .request(
            Method::GET,
            "/v1/admin/sales?limit=2",
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let page: Vec<u64> = first.json["sales"]
        .as_array()
        .expect("sales")
        .iter()
        .map(|s| s["sale_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(page, [ids[2], ids[1]]);
    let cursor = first.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let second = app
        .request(
            Method::GET,
            &format!("/v1/admin/sales?limit=2&cursor={cursor}"),
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(second.json["sales"][0]["sale_id"].as_u64(), Some(ids[0]));
    assert!(second.json["next_cursor"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn a_sale_lost_by_redis_is_restored_from_mysql_without_double_counting() {
    let app = spawn_app().await;
    let kept = app.sale(json!({"stock": 4})).await;
    let lost = app.sale(json!({"stock": 7, "per_user_limit": 2})).await;
    assert_eq!(
        app.purchase(kept, "u1", 1).await.status,
        StatusCode::ACCEPTED
    );
    // Three units of the sale to be lost are persisted first: MySQL's `sold` and buyers are
    // what the restore must start from.
    for (user, quantity) in [("u1", 2), ("u3", 1)] {
        let reply = app.purchase(lost, user, quantity).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    }
    let persister = app.start_persister().await;
    let sold = format!("SELECT CAST(sold AS SIGNED) FROM sales WHERE sale_id = {lost}");
    assert_eq!(app.wait_for_count(&sold, 3).await, 3);
    persister.stop().await;

    // Redis loses one sale entirely (as after a restart without its data).
    let prefix = app.settings.redis.key_prefix.clone();
    for suffix in ["sale", "stock", "buyers"] {
        let _: i64 = app
            .redis
            .del(format!("{prefix}:{{s:{lost}}}:{suffix}"))
            .await
            .expect("DEL");
    }
    assert_eq!(
        app.purchase(lost, "u1", 1).await.status,
        StatusCode::NOT_FOUND
    );

    // A gateway starting up restores it; the surviving sale keeps its live counters.
    let settings = app.settings.clone();
    let db = app.db.clone();
    app.stop().await;
    let app = start(settings, db).await;
    let restored = app.get_sale(lost).await.json;
    assert_eq!(
        (&restored["remaining"], &restored["admitted"]),
        (&json!(4), &json!(3)),
        "total − sold from MySQL: {restored}"
    );
    assert_eq!(app.get_sale(kept).await.json["remaining"], 3);
    // Each buyer's units come back from MySQL: u1 has her two, u3 one of two.
    assert_eq!(app.purchase(lost, "u1", 1).await.code(), "limit_exceeded");
    assert_eq!(app.purchase(lost, "u3", 2).await.code(), "limit_exceeded");
    assert_eq!(
        app.purchase(lost, "u3", 1).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.purchase(lost, "u2", 1).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.get_sale(lost).await.json["remaining"], 2);

    // On demand too.
    let _: i64 = app
        .redis
        .del(format!("{prefix}:{{s:{kept}}}:sale"))
        .await
        .expect("DEL");
    let token = app.token("ops", Role::Ops);
    let restored = app
        .request(
            Method::POST,
            "/v1/admin/sales/restore",
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.json);
    assert_eq!(restored.json["restored"], 1);
    assert_eq!(
        app.get_sale(kept).await.json["remaining"],
        3,
        "the surviving stock counter is kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_paused_sale_refuses_purchases_until_resumed() {
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 3})).await;
    let token = app.token("m", Role::Manager);
    let path = format!("/v1/admin/sales/{sale_id}");

    let paused = app
        .request(
            Method::PATCH,
            &path,
            Some(&token),
            &[],
            Some(json!({"status": "paused"})),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.json);
    assert_eq!(paused.json["status"], "paused");
    let refused = app.purchase(sale_id, "u1", 1).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "sale_not_active")
    );

    let bad = app
        .request(
            Method::PATCH,
            &path,
            Some(&token),
            &[],
            Some(json!({"status": "gone"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let resumed = app
        .request(
            Method::PATCH,
            &path,
            Some(&token),
            &[],
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(
        app.purchase(sale_id, "u1", 1).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.get_sale(sale_id).await.json["remaining"], 2);
    app.stop().await;
}
