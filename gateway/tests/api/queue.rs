//! The waiting room on the real stack: passes admit only their user and sale, an expired pass
//! gives its slot to the next position, later joiners queue behind, a second join finds the
//! same ticket, idle tickets are dropped, the manager changes the rate and pauses, the room's
//! keys leave with the sale, and bad input gets a 4xx.

use std::time::Duration;

use flashgate_gateway::auth::Role;
use flashgate_gateway::queue::keys::QueueKeys;
use fred::prelude::KeysInterface;
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, eventually};
use crate::queue_support::{
    buy, in_seconds, join, poll, poll_until, public, queue_app, queued_sale, ticket_of,
    wait_for_draw,
};

async fn patch_queue(
    app: &TestApp,
    sale_id: u64,
    body: serde_json::Value,
) -> crate::helpers::Reply {
    let token = app.token("manager-1", Role::Manager);
    app.request(
        Method::PATCH,
        &format!("/v1/admin/sales/{sale_id}"),
        Some(&token),
        &[],
        Some(body),
    )
    .await
}

#[tokio::test]
async fn a_pass_admits_only_its_user_and_its_sale() {
    let app = queue_app(120, 120).await;
    let starts_at = in_seconds(3);
    let sale = queued_sale(&app, starts_at, 10, json!({})).await;
    let other_sale = queued_sale(&app, starts_at, 10, json!({})).await;
    let ann = ticket_of(&app, sale, "ann").await;
    let _bob = ticket_of(&app, sale, "bob").await;
    let _ann_elsewhere = ticket_of(&app, other_sale, "ann").await;
    wait_for_draw(&app, sale, starts_at).await;
    let view = poll_until(&app, sale, "ann", &ann, "admitted").await;
    let pass = view["pass"]
        .as_str()
        .expect("an admitted ticket carries its pass");
    assert!(view["pass_expires_at"].is_string(), "{view}");

    for (who, on, pass) in [
        ("ann", sale, None),
        ("ann", sale, Some("v1.garbage")),
        ("bob", sale, Some(pass)),
        ("ann", other_sale, Some(pass)),
    ] {
        let reply = buy(&app, on, who, pass).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::FORBIDDEN, "queue_pass_required"),
            "{who} on sale {on} with {pass:?}: {}",
            reply.json
        );
    }
    let (stock, ..) = crate::helpers::sale_counters(&app, sale).await;
    assert_eq!(stock, 10, "a refused purchase takes nothing");
    let reply = buy(&app, sale, "ann", Some(pass)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_pass_frees_its_slot_for_the_next_position() {
    let app = queue_app(1, 120).await;
    let starts_at = in_seconds(3);
    let sale = queued_sale(&app, starts_at, 10, json!({ "max_active": 1 })).await;
    let users = ["u1", "u2", "u3"];
    let mut tickets = Vec::new();
    for user in users {
        tickets.push(ticket_of(&app, sale, user).await);
    }
    let drawn = wait_for_draw(&app, sale, starts_at).await;
    let order: Vec<String> = serde_json::from_value(drawn["tickets"].clone()).expect("tickets");
    let holder = |position: usize| {
        let at = tickets
            .iter()
            .position(|t| *t == order[position - 1])
            .expect("drawn");
        (users[at], tickets[at].as_str())
    };
    let (first, first_ticket) = holder(1);
    let (second, second_ticket) = holder(2);

    let admitted = poll_until(&app, sale, first, first_ticket, "admitted").await;
    let pass = admitted["pass"].as_str().expect("pass").to_owned();
    // Only one pass may be outstanding: the second position waits, first in line.
    let waiting = poll(&app, sale, second, second_ticket).await.json;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["ahead"], 0, "{waiting}");

    // The first pass goes unused past its second of life: it expires, the next is admitted.
    poll_until(&app, sale, first, first_ticket, "expired").await;
    let next = poll_until(&app, sale, second, second_ticket, "admitted").await;
    assert_eq!(next["position"], 2);
    let late = buy(&app, sale, first, Some(&pass)).await;
    assert_eq!(
        late.code(),
        "queue_pass_required",
        "an expired pass: {}",
        late.json
    );
    let reply = buy(&app, sale, second, next["pass"].as_str()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    let live = &app.get_sale(sale).await.json["queue"]["live"];
    assert_eq!(live["expired"], 1, "{live}");
    // An operator sees the admitter's work in /metrics.
    let count = async |event: &str| -> u64 {
        let series = format!("flashgate_queue_events_total{{event=\"{event}\"}} ");
        app.metric(&series).await.unwrap_or(0)
    };
    assert!(count("admitted").await >= 2);
    assert_eq!(count("expired").await, 1);
    assert_eq!(count("drawn").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_joiner_after_the_start_queues_behind_and_joining_twice_finds_the_same_ticket() {
    let app = queue_app(120, 120).await;
    let starts_at = in_seconds(3);
    // Paused: nobody is admitted, so positions and the line stay still.
    let sale = queued_sale(&app, starts_at, 10, json!({})).await;
    let paused = patch_queue(&app, sale, json!({ "queue": { "paused": true } })).await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.json);
    assert_eq!(paused.json["queue"]["paused"], true);
    let early: Vec<String> = {
        let mut t = Vec::new();
        for user in ["e1", "e2", "e3"] {
            t.push(ticket_of(&app, sale, user).await);
        }
        t
    };
    let again = join(&app, sale, "e1").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
    assert_eq!(
        again.json["ticket_id"],
        early[0].as_str(),
        "one ticket per user"
    );

    wait_for_draw(&app, sale, starts_at).await;
    let late = join(&app, sale, "late").await;
    assert_eq!(late.status, StatusCode::CREATED, "{}", late.json);
    assert_eq!(
        late.json["position"], 4,
        "behind the three drawn: {}",
        late.json
    );
    let ticket = late.json["ticket_id"].as_str().expect("ticket");
    let view = poll(&app, sale, "late", ticket).await.json;
    assert_eq!(
        (view["status"].clone(), view["ahead"].clone()),
        (json!("waiting"), json!(3))
    );
    assert!(
        view["estimated_wait_seconds"].is_null(),
        "paused: no estimate: {view}"
    );
    let again = join(&app, sale, "late").await;
    assert_eq!(again.json["ticket_id"], ticket, "{}", again.json);
    assert_eq!(again.json["position"], 4);

    // Resumed at 1 a second: the line moves in position order.
    let resumed = patch_queue(
        &app,
        sale,
        json!({ "queue": { "paused": false, "admit_per_second": 1 } }),
    )
    .await;
    assert_eq!(
        resumed.json["queue"]["admit_per_second"], 1,
        "{}",
        resumed.json
    );
    let admitted = poll_until(&app, sale, "late", ticket, "admitted").await;
    assert_eq!(admitted["position"], 4);
    let live = &app.get_sale(sale).await.json["queue"]["live"];
    assert_eq!(
        (live["joined"].clone(), live["admitted"].clone()),
        (json!(4), json!(4)),
        "{live}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_ticket_whose_owner_stops_polling_is_dropped() {
    let app = queue_app(120, 1).await;
    let starts_at = in_seconds(2);
    let sale = queued_sale(&app, starts_at, 10, json!({})).await;
    patch_queue(&app, sale, json!({ "queue": { "paused": true } })).await;
    let gone = ticket_of(&app, sale, "gone").await;
    let stays = ticket_of(&app, sale, "stays").await;
    wait_for_draw(&app, sale, starts_at).await;
    // `stays` polls every 200 ms; `gone` never does.
    let dropped = eventually(|| async {
        let view = poll(&app, sale, "stays", &stays).await.json;
        assert_eq!(view["status"], "waiting", "{view}");
        app.get_sale(sale).await.json["queue"]["live"]["dropped"] == 1
    })
    .await;
    assert!(dropped, "the idle ticket was never dropped");
    assert_eq!(
        poll(&app, sale, "gone", &gone).await.json["status"],
        "dropped"
    );
    let view = poll(&app, sale, "stays", &stays).await.json;
    assert_eq!(
        (view["status"].clone(), view["ahead"].clone()),
        (json!("waiting"), json!(0))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_rooms_keys_leave_redis_with_the_sale() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.queue.tick_ms = 50;
        s.gateway.sale_cleanup_grace_ms = 0;
    })
    .await;
    let ends_at = in_seconds(3);
    let sale = app
        .sale(json!({
            "starts_at": in_seconds(2).to_rfc3339(),
            "ends_at": ends_at.to_rfc3339(),
            "queue": {
                "mode": "draw",
                "opens_at": in_seconds(-60).to_rfc3339(),
                "admit_per_second": 10,
            },
        }))
        .await;
    ticket_of(&app, sale, "ann").await;
    let keys = QueueKeys::new(&app.settings.redis.key_prefix, sale);
    let present: i64 = app.redis.exists(keys.all()).await.expect("exists");
    assert!(present >= 4, "the room is in Redis");
    tokio::time::sleep((ends_at - chrono::Utc::now()).to_std().unwrap_or_default()).await;
    let gone = eventually(|| async {
        flashgate_gateway::lifecycle::sweeper::sweep(&app.state)
            .await
            .expect("sweep");
        let left: i64 = app.redis.exists(keys.all()).await.expect("exists");
        left == 0
    })
    .await;
    assert!(gone, "the room's keys outlived the sale");
    // The published draw outlives them (MySQL).
    assert_eq!(public(&app, sale, "/draw").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn bad_queue_input_is_refused_with_a_4xx() {
    let app = queue_app(120, 120).await;
    let starts_at = in_seconds(600);
    let room = |extra: serde_json::Value| {
        let mut room = json!({
            "mode": "draw",
            "opens_at": in_seconds(-60).to_rfc3339(),
            "admit_per_second": 5,
        });
        if let (serde_json::Value::Object(base), serde_json::Value::Object(extra)) =
            (&mut room, extra)
        {
            base.extend(extra);
        }
        json!({ "starts_at": starts_at.to_rfc3339(), "queue": room })
    };
    for (what, body) in [
        (
            "opens after the start",
            room(json!({ "opens_at": in_seconds(700).to_rfc3339() })),
        ),
        ("no admission", room(json!({ "admit_per_second": 0 }))),
        ("another mode", room(json!({ "mode": "fifo" }))),
        ("no slot", room(json!({ "max_active": 0 }))),
        ("an unknown field", room(json!({ "shuffle": true }))),
    ] {
        let reply = app.create_sale(body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{what}: {}",
            reply.json
        );
    }

    let plain = app.sale(json!({})).await;
    assert_eq!(join(&app, plain, "ann").await.status, StatusCode::NOT_FOUND);
    assert_eq!(public(&app, plain, "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        public(&app, plain, "/draw").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        join(&app, 999_999_999, "ann").await.status,
        StatusCode::NOT_FOUND
    );
    let patch = patch_queue(&app, plain, json!({ "queue": { "paused": true } })).await;
    assert_eq!(patch.status, StatusCode::BAD_REQUEST, "{}", patch.json);
    let plain_buy = buy(&app, plain, "ann", None).await;
    assert_eq!(
        plain_buy.status,
        StatusCode::ACCEPTED,
        "a sale without a room needs no pass"
    );

    let sale = queued_sale(&app, starts_at, 10, json!({})).await;
    for body in [
        json!({}),
        json!({ "queue": {} }),
        json!({ "queue": { "admit_per_second": 0 } }),
    ] {
        let reply = patch_queue(&app, sale, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.json
        );
    }
    let half = patch_queue(
        &app,
        sale,
        json!({ "status": "bogus", "queue": { "paused": true } }),
    )
    .await;
    assert_eq!(half.status, StatusCode::BAD_REQUEST, "{}", half.json);
    let view = app.get_sale(sale).await.json;
    assert_eq!(
        view["queue"]["paused"], false,
        "a refused PATCH changes nothing: {view}"
    );
    let ticket = ticket_of(&app, sale, "ann").await;
    assert_eq!(
        poll(&app, sale, "bob", &ticket).await.status,
        StatusCode::NOT_FOUND,
        "not bob's"
    );
    assert_eq!(
        poll(&app, sale, "ann", "no-such-ticket").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(public(&app, sale, "/draw").await.code(), "queue_not_drawn");
    assert_eq!(
        buy(&app, sale, "ann", None).await.status,
        StatusCode::FORBIDDEN
    );

    let later = queued_sale(
        &app,
        starts_at,
        10,
        json!({ "opens_at": in_seconds(300).to_rfc3339() }),
    )
    .await;
    let early = join(&app, later, "ann").await;
    assert_eq!(
        (early.status, early.code()),
        (StatusCode::CONFLICT, "queue_not_open"),
        "{}",
        early.json
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    app.stop().await;
}
