//! First-come coupons: policies, atomic claims under contention, redeem and cancel, and the
//! way to MySQL through the coupons topic and the persister.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use flashgate_gateway::auth::Role;
use fred::prelude::{HashesInterface, KeysInterface, StreamsInterface};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, RunningPersister, TestApp, redis_now_ms, spawn_app, spawn_app_with};

/// Fires `claims` concurrently, 512 in flight at a time (user of each given by `user_of`),
/// and counts the answers by status and error code; returns the coupon ids issued too.
async fn claim_all(
    app: &Arc<TestApp>,
    policy_id: u64,
    claims: usize,
    user_of: fn(usize) -> String,
) -> (HashMap<String, usize>, HashSet<String>) {
    // At most 512 connections at once: thousands of connects in the same instant overflow the
    // kernel's accept queue of one listener on a busy machine (a reset before the request is
    // sent), which says nothing about the claims.
    let open = Arc::new(tokio::sync::Semaphore::new(512));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..claims {
        let (app, open) = (app.clone(), open.clone());
        tasks.spawn(async move {
            let _connection = open.acquire_owned().await.expect("semaphore");
            app.claim(policy_id, &user_of(i), &[]).await
        });
    }
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let mut coupons = HashSet::new();
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.expect("task");
        let outcome = match reply.status {
            StatusCode::CREATED => {
                assert_eq!(reply.json["status"], "issued");
                assert_eq!(reply.json["policy_id"], policy_id);
                coupons.insert(reply.json["coupon_id"].as_str().expect("id").to_owned());
                "issued".to_owned()
            }
            StatusCode::CONFLICT => reply.code().to_owned(),
            other => panic!("unexpected {other}: {}", reply.json),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    (outcomes, coupons)
}

fn counts(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

async fn redis_remaining(app: &TestApp, policy_id: u64) -> i64 {
    let key = format!(
        "{}:{{c:{policy_id}}}:remaining",
        app.settings.redis.key_prefix
    );
    app.redis.get(key).await.expect("GET remaining")
}

/// Waits until MySQL holds `expected` issued coupons of the policy, and checks the policy's
/// own counter agrees.
async fn assert_persisted(
    app: &TestApp,
    persister: &RunningPersister,
    policy_id: u64,
    expected: i64,
) {
    let persisted = app
        .wait_for_count(
            &format!(
                "SELECT COUNT(*) FROM coupons WHERE policy_id = {policy_id} AND status = 'issued'"
            ),
            expected,
        )
        .await;
    assert_eq!(persisted, expected, "issued coupons in MySQL");
    // Every policy event relayed, and every message on the topics consumed: a duplicate or an
    // extra coupon would be in MySQL now.
    let outbox =
        flashgate_gateway::keys::PolicyKeys::new(&app.settings.redis.key_prefix, policy_id).outbox;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.redis.xlen::<u64, _>(&outbox).await.expect("XLEN") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the policy's outbox never emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_until_consumed_all(persister).await;
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM coupons WHERE policy_id = ?")
        .bind(policy_id)
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(all, expected, "no rejected or extra rows");
    let counter: u32 = sqlx::query_scalar("SELECT issued FROM coupon_policies WHERE policy_id = ?")
        .bind(policy_id)
        .fetch_one(&app.db)
        .await
        .expect("policy");
    assert_eq!(i64::from(counter), expected, "coupon_policies.issued");
    assert_eq!(app.get_policy(policy_id).await.json["persisted"], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_concurrent_claimers_of_five_hundred_coupons_get_exactly_five_hundred() {
    // All 5,000 in flight at once queue up behind Redis on this small machine (and in a debug
    // build): the time limits are raised so that every claimer gets a final answer.
    let app = Arc::new(
        spawn_app_with(|s| {
            s.redis.command_timeout_ms = 30_000;
            s.gateway.request_timeout_ms = 30_000;
        })
        .await,
    );
    let policy_id = app.policy(json!({"total_quantity": 500})).await;

    let (outcomes, coupons) = claim_all(&app, policy_id, 5_000, |i| format!("claimer-{i}")).await;

    assert_eq!(outcomes, counts(&[("issued", 500), ("exhausted", 4_500)]));
    assert_eq!(coupons.len(), 500, "coupon ids are unique");
    assert_eq!(redis_remaining(&app, policy_id).await, 0);
    let view = app.get_policy(policy_id).await;
    assert_eq!(
        (
            view.json["issued"].as_i64(),
            view.json["remaining"].as_i64()
        ),
        (Some(500), Some(0))
    );

    let persister = app.start_persister().await;
    assert_persisted(&app, &persister, policy_id, 500).await;
    let holders: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT user_id) FROM coupons WHERE policy_id = ?")
            .bind(policy_id)
            .fetch_one(&app.db)
            .await
            .expect("holders");
    assert_eq!(holders, 500, "one coupon per claimer");
    persister.stop().await;
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shopper_firing_fifty_parallel_claims_gets_exactly_one_coupon() {
    let app = Arc::new(spawn_app().await);
    let policy_id = app.policy(json!({"total_quantity": 100})).await;

    let (outcomes, _) = claim_all(&app, policy_id, 50, |_| "greedy".to_owned()).await;

    assert_eq!(outcomes, counts(&[("issued", 1), ("already_claimed", 49)]));
    assert_eq!(redis_remaining(&app, policy_id).await, 99);
    let persister = app.start_persister().await;
    assert_persisted(&app, &persister, policy_id, 1).await;
    persister.stop().await;
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_coupon_with_sixty_four_claimers_goes_to_exactly_one_in_redis_and_mysql() {
    let app = Arc::new(spawn_app().await);
    let policy_id = app.policy(json!({"total_quantity": 1})).await;

    let (outcomes, _) = claim_all(&app, policy_id, 64, |i| format!("racer-{i}")).await;

    assert_eq!(outcomes, counts(&[("issued", 1), ("exhausted", 63)]));
    assert_eq!(redis_remaining(&app, policy_id).await, 0);
    let persister = app.start_persister().await;
    assert_persisted(&app, &persister, policy_id, 1).await;
    persister.stop().await;
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test]
async fn a_per_user_limit_of_two_lets_a_shopper_claim_twice_and_no_more() {
    let app = spawn_app().await;
    let policy_id = app
        .policy(json!({"total_quantity": 10, "per_user_limit": 2}))
        .await;
    assert_eq!(
        app.claim(policy_id, "ann", &[]).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.claim(policy_id, "ann", &[]).await.status,
        StatusCode::CREATED
    );
    let third = app.claim(policy_id, "ann", &[]).await;
    assert_eq!(
        (third.status, third.code()),
        (StatusCode::CONFLICT, "already_claimed")
    );
    assert_eq!(redis_remaining(&app, policy_id).await, 8);
    let persister = app.start_persister().await;
    assert_persisted(&app, &persister, policy_id, 2).await;
    persister.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_replays_the_same_coupon() {
    let app = spawn_app().await;
    let policy_id = app.policy(json!({"total_quantity": 5})).await;
    let first = app
        .claim(policy_id, "ivy", &[("idempotency-key", "claim-1")])
        .await;
    let again = app
        .claim(policy_id, "ivy", &[("idempotency-key", "claim-1")])
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.json);
    assert_eq!(first.json["coupon_id"], again.json["coupon_id"]);
    assert_eq!(first.json["expires_at"], again.json["expires_at"]);
    assert_eq!(redis_remaining(&app, policy_id).await, 4, "claimed once");
    // A new key is a new claim: refused, the limit being one.
    let other = app
        .claim(policy_id, "ivy", &[("idempotency-key", "claim-2")])
        .await;
    assert_eq!(other.code(), "already_claimed");
    let bad = app
        .claim(policy_id, "ivy", &[("idempotency-key", "no spaces")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

async fn set_status(app: &TestApp, policy_id: u64, status: &str) -> Reply {
    let token = app.token("manager-1", Role::Manager);
    app.request(
        Method::PATCH,
        &format!("/v1/admin/coupon-policies/{policy_id}"),
        Some(&token),
        &[],
        Some(json!({ "status": status })),
    )
    .await
}

/// Claims as `user` and asserts the refusal of a policy not open for claims.
async fn assert_refused(app: &TestApp, policy_id: u64, user: &str) {
    let reply = app.claim(policy_id, user, &[]).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::CONFLICT, "policy_not_active"),
        "{}",
        reply.json
    );
}

/// `(issued, remaining)` of a policy as the manager API shows it.
async fn taken(app: &TestApp, policy_id: u64) -> (Option<i64>, Option<i64>) {
    let view = app.get_policy(policy_id).await.json;
    (view["issued"].as_i64(), view["remaining"].as_i64())
}

#[tokio::test]
async fn paused_closed_unopened_and_ended_policies_refuse_claims_with_409() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();

    let later = app
        .policy(json!({
            "claim_starts_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "claim_ends_at": (now + chrono::Duration::hours(2)).to_rfc3339(),
        }))
        .await;
    assert_refused(&app, later, "u1").await;
    assert_eq!(taken(&app, later).await, (Some(0), Some(10)));

    // Claimable for two seconds: one claim inside the window, one after it.
    let ends = chrono::Utc::now() + chrono::Duration::seconds(2);
    let ending = app
        .policy(json!({ "claim_ends_at": ends.to_rfc3339() }))
        .await;
    assert_eq!(
        app.claim(ending, "u1", &[]).await.status,
        StatusCode::CREATED,
        "open before its end"
    );

    let paused = app.policy(json!({})).await;
    let reply = set_status(&app, paused, "paused").await;
    assert_eq!(
        (reply.status, reply.json["status"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
    assert_refused(&app, paused, "u1").await;
    assert_eq!(taken(&app, paused).await, (Some(0), Some(10)));
    assert_eq!(
        set_status(&app, paused, "active").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.claim(paused, "u1", &[]).await.status,
        StatusCode::CREATED,
        "resumed"
    );

    assert_eq!(
        set_status(&app, paused, "closed").await.status,
        StatusCode::OK
    );
    assert_refused(&app, paused, "u2").await;
    assert_eq!(taken(&app, paused).await, (Some(1), Some(9)));
    let reopen = set_status(&app, paused, "active").await;
    assert_eq!(
        (reopen.status, reopen.code()),
        (StatusCode::CONFLICT, "policy_closed")
    );
    let bogus = set_status(&app, paused, "deleted").await;
    assert_eq!(bogus.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        set_status(&app, 999_999, "paused").await.status,
        StatusCode::NOT_FOUND
    );

    // Past its end by Redis's clock, the one the claim script reads.
    while redis_now_ms(&app).await <= ends.timestamp_millis() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_refused(&app, ending, "u2").await;
    assert_eq!(taken(&app, ending).await, (Some(1), Some(9)));

    let unknown = app.claim(999_999, "u1", &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn invalid_policies_get_400_naming_the_field_and_nothing_is_created() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    for (overrides, field) in [
        (
            json!({"discount": {"kind": "percent", "value": 0}}),
            "discount.value",
        ),
        (
            json!({"discount": {"kind": "percent", "value": 150}}),
            "discount.value",
        ),
        (
            json!({"discount": {"kind": "gift", "value": 5}}),
            "discount.kind",
        ),
        (json!({"total_quantity": 0}), "total_quantity"),
        (json!({"per_user_limit": 0}), "per_user_limit"),
        (json!({"name": ""}), "name"),
        (
            json!({"claim_ends_at": (now - chrono::Duration::minutes(5)).to_rfc3339()}),
            "claim_ends_at",
        ),
        (
            json!({"expires_at": (now + chrono::Duration::days(2)).to_rfc3339()}),
            "valid_for_seconds",
        ),
        (json!({"valid_for_seconds": null}), "valid_for_seconds"),
        (json!({"surprise": true}), "surprise"),
    ] {
        let reply = app.create_policy(overrides.clone()).await;
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
    let shopper = app.token("sam", Role::Shopper);
    let forbidden = app
        .request(
            Method::POST,
            "/v1/admin/coupon-policies",
            Some(&shopper),
            &[],
            Some(json!({})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let manager = app.token("manager-1", Role::Manager);
    let list = app
        .request(
            Method::GET,
            "/v1/admin/coupon-policies",
            Some(&manager),
            &[],
            None,
        )
        .await;
    assert_eq!(list.json["policies"], json!([]), "nothing created");
    app.stop().await;
}

#[tokio::test]
async fn policies_are_listed_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(app.policy(json!({"name": format!("policy {n}")})).await);
    }
    let manager = app.token("manager-1", Role::Manager);
    let first = app
        .request(
            Method::GET,
            "/v1/admin/coupon-policies?limit=2",
            Some(&manager),
            &[],
            None,
        )
        .await;
    let page: Vec<u64> = first.json["policies"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["policy_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(page, vec![ids[2], ids[1]]);
    let cursor = first.json["next_cursor"].as_str().expect("cursor");
    let second = app
        .request(
            Method::GET,
            &format!("/v1/admin/coupon-policies?limit=2&cursor={cursor}"),
            Some(&manager),
            &[],
            None,
        )
        .await;
    assert_eq!(second.json["policies"][0]["policy_id"], ids[0]);
    assert_eq!(second.json["next_cursor"], Value::Null);
    app.stop().await;
}

/// A sale the shopper bought twice from (orders of 1999 each) and a coupon of theirs.
async fn shopper_with_orders_and_coupon(app: &TestApp, policy: Value) -> (Vec<String>, String) {
    let sale_id = app
        .sale(json!({"stock": 10, "per_user_limit": 2, "price": 1999}))
        .await;
    let mut orders = Vec::new();
    for _ in 0..2 {
        let reply = app.purchase(sale_id, "rita", 1).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
        orders.push(reply.json["order_id"].as_str().expect("order").to_owned());
    }
    let policy_id = app.policy(policy).await;
    let claimed = app.claim(policy_id, "rita", &[]).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.json);
    (
        orders,
        claimed.json["coupon_id"]
            .as_str()
            .expect("coupon")
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_redeems_of_one_coupon_give_one_200_and_one_409() {
    let app = Arc::new(spawn_app().await);
    let (orders, coupon) = shopper_with_orders_and_coupon(&app, json!({})).await;

    let mut tasks = tokio::task::JoinSet::new();
    for order in orders.clone() {
        let (app, coupon) = (app.clone(), coupon.clone());
        tasks.spawn(async move {
            app.coupon_action(
                &coupon,
                "redeem",
                "rita",
                Some(json!({ "order_id": order })),
            )
            .await
        });
    }
    let mut wins = Vec::new();
    let mut refused = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.expect("task");
        match reply.status {
            StatusCode::OK => wins.push(reply.json),
            StatusCode::CONFLICT if reply.code() == "already_redeemed" => refused += 1,
            other => panic!("unexpected {other}: {}", reply.json),
        }
    }
    assert_eq!((wins.len(), refused), (1, 1));
    assert_eq!(wins[0]["discount"], 199, "10% of 1999, rounded down");
    assert_eq!(wins[0]["order_amount"], 1999);
    let won_order = wins[0]["order_id"].as_str().expect("order").to_owned();

    // Someone else cannot touch it; cancelling gives it back for another order.
    let stranger = app
        .coupon_action(
            &coupon,
            "redeem",
            "mallory",
            Some(json!({"order_id": orders[0]})),
        )
        .await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);
    let cancelled = app
        .coupon_action(&coupon, "cancel-redemption", "rita", None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.json);
    assert_eq!(cancelled.json["released_from"], won_order.as_str());
    let twice = app
        .coupon_action(&coupon, "cancel-redemption", "rita", None)
        .await;
    assert_eq!(twice.code(), "not_redeemed");
    let other_order = orders.iter().find(|o| **o != won_order).expect("other");
    let again = app
        .coupon_action(
            &coupon,
            "redeem",
            "rita",
            Some(json!({ "order_id": other_order })),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);

    // MySQL ends with the last change: redeemed on the other order, change 4.
    let persister = app.start_persister().await;
    let sql = format!(
        "SELECT COUNT(*) FROM coupons WHERE coupon_id = '{coupon}' AND status = 'redeemed' \
         AND order_id = '{other_order}' AND seq = 4 AND discount = 199"
    );
    assert_eq!(app.wait_for_count(&sql, 1).await, 1);
    let token = app.token("rita", Role::Shopper);
    let mine = app
        .request(Method::GET, "/v1/me/coupons", Some(&token), &[], None)
        .await;
    assert_eq!(mine.json["coupons"][0]["coupon_id"], coupon.as_str());
    assert_eq!(mine.json["coupons"][0]["status"], "redeemed");
    assert_eq!(mine.json["coupons"][0]["order_id"], other_order.as_str());
    persister.stop().await;
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test]
async fn a_coupon_respects_the_minimum_order_amount_and_its_expiry() {
    let app = spawn_app().await;
    let (orders, coupon) = shopper_with_orders_and_coupon(
        &app,
        json!({"discount": {"kind": "amount", "value": 500}, "min_order_amount": 5000}),
    )
    .await;
    let small = app
        .coupon_action(
            &coupon,
            "redeem",
            "rita",
            Some(json!({"order_id": orders[0]})),
        )
        .await;
    assert_eq!(
        (small.status, small.code()),
        (StatusCode::CONFLICT, "below_min_order_amount")
    );
    let unknown_order = app
        .coupon_action(
            &coupon,
            "redeem",
            "rita",
            Some(json!({"order_id": "1-nope"})),
        )
        .await;
    assert_eq!(unknown_order.status, StatusCode::NOT_FOUND);
    let no_order = app
        .coupon_action(&coupon, "redeem", "rita", Some(json!({})))
        .await;
    assert_eq!(no_order.status, StatusCode::BAD_REQUEST);

    // A coupon valid for one second cannot be redeemed after it, and is listed as expired.
    let short = app.policy(json!({"valid_for_seconds": 1})).await;
    let claimed = app.claim(short, "rita", &[]).await;
    let short_coupon = claimed.json["coupon_id"]
        .as_str()
        .expect("coupon")
        .to_owned();
    // The scenario is its expiry: wait for Redis's clock (the scripts') to pass it.
    let expires_ms =
        chrono::DateTime::parse_from_rfc3339(claimed.json["expires_at"].as_str().expect("expiry"))
            .expect("a time")
            .timestamp_millis();
    while redis_now_ms(&app).await <= expires_ms {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = app
        .coupon_action(
            &short_coupon,
            "redeem",
            "rita",
            Some(json!({"order_id": orders[0]})),
        )
        .await;
    assert_eq!(
        (late.status, late.code()),
        (StatusCode::CONFLICT, "coupon_expired")
    );

    let persister = app.start_persister().await;
    let sql = "SELECT COUNT(*) FROM coupons WHERE user_id = 'rita'";
    assert_eq!(app.wait_for_count(sql, 2).await, 2);
    let token = app.token("rita", Role::Shopper);
    let mine = app
        .request(
            Method::GET,
            "/v1/me/coupons?limit=1",
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(mine.json["coupons"][0]["coupon_id"], short_coupon.as_str());
    assert_eq!(mine.json["coupons"][0]["status"], "expired");
    let cursor = mine.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let next = app
        .request(
            Method::GET,
            &format!("/v1/me/coupons?limit=1&cursor={cursor}"),
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(next.json["coupons"][0]["coupon_id"], coupon.as_str());
    assert_eq!(next.json["coupons"][0]["status"], "issued");
    persister.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_policy_and_coupon_lost_by_redis_are_restored_from_mysql_without_double_issuing() {
    let app = spawn_app().await;
    let (orders, coupon) = shopper_with_orders_and_coupon(&app, json!({"total_quantity": 3})).await;
    let policy_id: u64 = coupon
        .split('-')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("id");
    let persister = app.start_persister().await;
    assert_persisted(&app, &persister, policy_id, 1).await;

    // Redis loses everything of the policy.
    let prefix = &app.settings.redis.key_prefix;
    let tag = format!("{prefix}:{{c:{policy_id}}}");
    for key in [
        format!("{tag}:policy"),
        format!("{tag}:remaining"),
        format!("{tag}:holders"),
        format!("{tag}:cpn:{coupon}"),
    ] {
        let _: i64 = app.redis.del(key).await.expect("DEL");
    }
    let manager = app.token("manager-1", Role::Manager);
    let restored = app
        .request(
            Method::POST,
            "/v1/admin/sales/restore",
            Some(&manager),
            &[],
            None,
        )
        .await;
    assert_eq!(restored.json["restored_policies"], 1, "{}", restored.json);
    assert_eq!(redis_remaining(&app, policy_id).await, 2);
    let held: Option<i64> = app
        .redis
        .hget(format!("{tag}:holders"), "rita")
        .await
        .expect("HGET");
    assert_eq!(held, Some(1), "the holder is remembered");
    assert_eq!(
        app.claim(policy_id, "rita", &[]).await.code(),
        "already_claimed"
    );

    // The coupon itself comes back from MySQL on first use.
    let redeemed = app
        .coupon_action(
            &coupon,
            "redeem",
            "rita",
            Some(json!({"order_id": orders[0]})),
        )
        .await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.json);
    persister.stop().await;
    app.stop().await;
}
