//! Discounts on one order: coupons and points together never sum past the order's amount,
//! under concurrency, refusals and cancellations (issue 12, item 11).

use std::collections::HashMap;
use std::sync::Arc;

use flashgate_events::keys::SaleKeys;
use flashgate_gateway::auth::Role;
use flashgate_gateway::orders::{DiscountMode, OrderDiscount, Reservation};
use flashgate_gateway::scripts::Scripts;
use fred::prelude::HashesInterface;
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Reply, TestApp, cancel_use, points_balance, spawn_app};

/// Unit price of the test sales: one unit makes an order of 1,000.
const PRICE: u64 = 1_000;

/// `user` gets `points` in MySQL (as an operator's adjustment would) and an order of one unit
/// at [`PRICE`]; returns the order id.
async fn shopper_with_points_and_order(app: &TestApp, user: &str, points: i64) -> String {
    app.grant_points(user, points).await;
    order(app, user).await
}

/// A fresh order of one unit at [`PRICE`] for `user`.
async fn order(app: &TestApp, user: &str) -> String {
    let sale = app.sale(json!({ "price": PRICE, "stock": 100 })).await;
    let reply = app.purchase(sale, user, 1).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    reply.json["order_id"].as_str().expect("order").to_owned()
}

/// A coupon for `user` of a policy worth `value` off any order.
async fn coupon_worth(app: &TestApp, user: &str, value: u64) -> String {
    let policy = app
        .policy(json!({ "discount": { "kind": "amount", "value": value } }))
        .await;
    let claimed = app.claim(policy, user, &[]).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.json);
    claimed.json["coupon_id"]
        .as_str()
        .expect("coupon")
        .to_owned()
}

async fn redeem(app: &TestApp, user: &str, coupon: &str, order_id: &str) -> Reply {
    app.coupon_action(
        coupon,
        "redeem",
        user,
        Some(json!({ "order_id": order_id })),
    )
    .await
}

async fn use_points(app: &TestApp, user: &str, order_id: &str, amount: u64) -> Reply {
    use_points_with(app, user, order_id, amount, &[]).await
}

async fn use_points_with(
    app: &TestApp,
    user: &str,
    order_id: &str,
    amount: u64,
    headers: &[(&str, &str)],
) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::POST,
        "/v1/me/points/use",
        Some(&token),
        headers,
        Some(json!({ "amount": amount, "order_id": order_id })),
    )
    .await
}

fn assert_exceeds(reply: &Reply) {
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::CONFLICT, "discount_exceeds_amount"),
        "{}",
        reply.json
    );
    let message = reply.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&PRICE.to_string()), "{message}");
}

/// What the discount hash of the order's sale says is reserved on the order.
async fn reserved_on(app: &TestApp, order_id: &str) -> u64 {
    let fields = discount_fields(app, order_id).await;
    fields
        .get(order_id)
        .map_or(0, |total| total.parse().expect("a number"))
}

async fn discount_fields(app: &TestApp, order_id: &str) -> HashMap<String, String> {
    let sale: u64 = order_id
        .split_once('-')
        .and_then(|(sale, _)| sale.parse().ok())
        .expect("sale id");
    let key = SaleKeys::new(&app.settings.redis.key_prefix, sale).discounts;
    app.redis.hgetall(key).await.expect("HGETALL")
}

fn txid(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
    reply.json["txid"].as_str().expect("txid").to_owned()
}

#[tokio::test]
async fn two_coupons_and_points_on_one_order_never_sum_past_its_amount() {
    let app = spawn_app().await;
    let user = "thrifty";
    let order_id = shopper_with_points_and_order(&app, user, 5_000).await;

    let first = redeem(&app, user, &coupon_worth(&app, user, 300).await, &order_id).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    assert_eq!(first.json["discount"], 300);
    let used = use_points(&app, user, &order_id, 500).await;
    assert_eq!(used.status, StatusCode::CREATED, "{}", used.json);

    // 200 of the amount is left: a coupon worth 600 gives those 200, as a till would.
    let second = redeem(&app, user, &coupon_worth(&app, user, 600).await, &order_id).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    assert_eq!(second.json["discount"], 200, "capped at what was left");
    assert_eq!(reserved_on(&app, &order_id).await, PRICE);

    // Nothing is left for points nor for a third coupon, and nothing was taken for them.
    assert_exceeds(&use_points(&app, user, &order_id, 1).await);
    assert_exceeds(&redeem(&app, user, &coupon_worth(&app, user, 50).await, &order_id).await);
    assert_eq!(points_balance(&app, user).await, 4_500);
    assert_eq!(reserved_on(&app, &order_id).await, PRICE);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_point_uses_on_one_order_cap_exactly_at_its_amount() {
    let app = Arc::new(spawn_app().await);
    let user = "eager";
    let order_id = shopper_with_points_and_order(&app, user, 10_000).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (app, order_id) = (app.clone(), order_id.clone());
        tasks.spawn(async move { use_points(&app, user, &order_id, 100).await });
    }
    let (mut used, mut refused) = (0, 0);
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.expect("task");
        match reply.status {
            StatusCode::CREATED => used += 1,
            StatusCode::CONFLICT => {
                assert_exceeds(&reply);
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.json),
        }
    }
    // An order of 1,000 takes exactly ten uses of 100; the other ten take nothing.
    assert_eq!((used, refused), (10, 10));
    assert_eq!(points_balance(&app, user).await, 9_000);
    assert_eq!(reserved_on(&app, &order_id).await, PRICE);
    Arc::into_inner(app).expect("sole owner").stop().await;
}

#[tokio::test]
async fn a_refused_use_gives_its_room_back_and_a_replay_still_gets_its_first_answer() {
    let app = spawn_app().await;
    let user = "retrier";
    let order_id = shopper_with_points_and_order(&app, user, 1_000).await;
    let coupon = redeem(&app, user, &coupon_worth(&app, user, 600).await, &order_id).await;
    assert_eq!(coupon.status, StatusCode::OK, "{}", coupon.json);

    // 400 left: more is refused outright.
    assert_exceeds(&use_points(&app, user, &order_id, 500).await);
    let key = [("idempotency-key", "pay-part")];
    let first = txid(&use_points_with(&app, user, &order_id, 100, &key).await);

    // Refused by the use script (the key was used with another body): its 300 come back...
    let reused = use_points_with(&app, user, &order_id, 300, &key).await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.json
    );
    // ...so a use of all 300 left succeeds.
    txid(&use_points(&app, user, &order_id, 300).await);
    assert_eq!(reserved_on(&app, &order_id).await, PRICE);

    // The order is full, yet the first request, retried with its key, gets its first answer.
    let replay = use_points_with(&app, user, &order_id, 100, &key).await;
    assert_eq!(txid(&replay), first);
    assert_exceeds(&use_points(&app, user, &order_id, 1).await);
    assert_eq!(points_balance(&app, user).await, 600);
    assert_eq!(reserved_on(&app, &order_id).await, PRICE);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_redeem_gives_its_room_back() {
    let app = spawn_app().await;
    let user = "hopper";
    let first_order = shopper_with_points_and_order(&app, user, 2_000).await;
    let second_order = order(&app, user).await;
    let coupon = coupon_worth(&app, user, 700).await;
    assert_eq!(
        redeem(&app, user, &coupon, &first_order).await.status,
        StatusCode::OK
    );

    // Already redeemed on the first order: the 700 reserved on the second come back.
    let again = redeem(&app, user, &coupon, &second_order).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "already_redeemed")
    );
    assert_eq!(reserved_on(&app, &second_order).await, 0);
    txid(&use_points(&app, user, &second_order, PRICE).await);
    assert_exceeds(&use_points(&app, user, &second_order, 1).await);
    // The first order keeps its coupon's 700 and nothing more.
    assert_exceeds(&use_points(&app, user, &first_order, 301).await);
    txid(&use_points(&app, user, &first_order, 300).await);
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_use_or_a_redemption_frees_its_room_for_another_discount() {
    let app = spawn_app().await;
    let user = "changeable";
    let order_id = shopper_with_points_and_order(&app, user, 5_000).await;

    let all = txid(&use_points(&app, user, &order_id, PRICE).await);
    assert_exceeds(&use_points(&app, user, &order_id, 1).await);
    let back = cancel_use(&app, user, &all).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.json);
    assert_eq!(reserved_on(&app, &order_id).await, 0);
    // A second cancel gives nothing more back, on the order as in points.
    assert_eq!(cancel_use(&app, user, &all).await.status, StatusCode::OK);

    let coupon = coupon_worth(&app, user, 600).await;
    let redeemed = redeem(&app, user, &coupon, &order_id).await;
    assert_eq!(redeemed.json["discount"], 600, "{}", redeemed.json);
    let rest = txid(&use_points(&app, user, &order_id, 400).await);
    assert_exceeds(&use_points(&app, user, &order_id, 1).await);

    let undone = app
        .coupon_action(&coupon, "cancel-redemption", user, None)
        .await;
    assert_eq!(undone.status, StatusCode::OK, "{}", undone.json);
    assert_eq!(reserved_on(&app, &order_id).await, 400);
    txid(&use_points(&app, user, &order_id, 600).await);
    assert_exceeds(&use_points(&app, user, &order_id, 1).await);

    // The points' room too: cancel the 400, and the coupon fits again, capped at 400.
    assert_eq!(cancel_use(&app, user, &rest).await.status, StatusCode::OK);
    let capped = redeem(&app, user, &coupon, &order_id).await;
    assert_eq!(capped.json["discount"], 400, "{}", capped.json);
    assert_eq!(reserved_on(&app, &order_id).await, PRICE);
    assert_eq!(points_balance(&app, user).await, 4_400);
    app.stop().await;
}

#[tokio::test]
async fn a_reservation_made_or_released_twice_counts_once() {
    let app = spawn_app().await;
    let script = Scripts::new().order_discount;
    let order_id = order(&app, "twice").await;
    let prefix = &app.settings.redis.key_prefix;
    let points = OrderDiscount::points(prefix, &order_id, "use-1").expect("an order");
    let coupon = OrderDiscount::coupon(prefix, &order_id, "7-c").expect("an order");

    // The same call run twice (a client re-send) answers as the first and reserves once.
    for _ in 0..2 {
        let reserved = points
            .reserve(
                &app.redis,
                &script,
                "use-1",
                700,
                PRICE,
                DiscountMode::Exact,
            )
            .await
            .expect("reserve");
        assert_eq!(
            reserved,
            Reservation::Reserved {
                granted: 700,
                total: 700,
                holder: "use-1".into()
            }
        );
    }
    // A coupon gets what is left; points past it get nothing.
    let capped = coupon
        .reserve(&app.redis, &script, "req-a", 500, PRICE, DiscountMode::Cap)
        .await
        .expect("reserve");
    assert_eq!(
        capped,
        Reservation::Reserved {
            granted: 300,
            total: PRICE,
            holder: "req-a".into()
        }
    );
    let other = OrderDiscount::points(prefix, &order_id, "use-2").expect("an order");
    assert_eq!(
        other
            .reserve(&app.redis, &script, "use-2", 1, PRICE, DiscountMode::Exact)
            .await
            .expect("reserve"),
        Reservation::Exceeds {
            total: PRICE,
            left: 0
        }
    );

    // Another request's release cannot free a reservation it does not hold; the holder's
    // frees it once.
    let not_mine = coupon.release(&app.redis, &script, Some("req-b")).await;
    assert!(!not_mine.expect("release"));
    for expected in [true, false] {
        let released = points.release(&app.redis, &script, Some("use-1")).await;
        assert_eq!(released.expect("release"), expected);
    }
    assert_eq!(reserved_on(&app, &order_id).await, 300);

    // A request that succeeded on another's reservation takes it over.
    let adopted = coupon
        .reserve(
            &app.redis,
            &script,
            "req-b",
            300,
            PRICE,
            DiscountMode::Adopt,
        )
        .await
        .expect("adopt");
    assert_eq!(
        adopted,
        Reservation::Reserved {
            granted: 300,
            total: 300,
            holder: "req-b".into()
        }
    );
    assert!(
        !coupon
            .release(&app.redis, &script, Some("req-a"))
            .await
            .expect("release")
    );
    assert!(
        coupon
            .release(&app.redis, &script, None)
            .await
            .expect("release")
    );
    assert!(
        discount_fields(&app, &order_id).await.is_empty(),
        "released reservations leave nothing behind"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_redemption_made_on_another_requests_reservation_keeps_it_when_that_one_lets_go() {
    let app = spawn_app().await;
    let user = "racer";
    let order_id = shopper_with_points_and_order(&app, user, 2_000).await;
    let coupon = coupon_worth(&app, user, 600).await;
    let script = Scripts::new().order_discount;
    let hold = OrderDiscount::coupon(&app.settings.redis.key_prefix, &order_id, &coupon)
        .expect("an order");
    // Another redeem of the same coupon on this order has reserved and not redeemed yet.
    let theirs = hold
        .reserve(
            &app.redis,
            &script,
            "their-request",
            600,
            PRICE,
            DiscountMode::Cap,
        )
        .await
        .expect("reserve");
    assert!(matches!(theirs, Reservation::Reserved { granted: 600, .. }));

    let mine = redeem(&app, user, &coupon, &order_id).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.json);
    assert_eq!(mine.json["discount"], 600);
    // The other request is refused and lets go of what it reserved: the redemption's room
    // stays reserved.
    let released = hold
        .release(&app.redis, &script, Some("their-request"))
        .await;
    assert!(!released.expect("release"));
    assert_eq!(reserved_on(&app, &order_id).await, 600);
    assert_exceeds(&use_points(&app, user, &order_id, 401).await);
    txid(&use_points(&app, user, &order_id, 400).await);
    app.stop().await;
}

#[tokio::test]
async fn a_discount_request_for_someone_elses_order_is_404_and_reserves_nothing() {
    let app = spawn_app().await;
    let order_id = shopper_with_points_and_order(&app, "owner", 100).await;
    shopper_with_points_and_order(&app, "intruder", 100).await;
    let reply = use_points(&app, "intruder", &order_id, 10).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.json);
    let coupon = coupon_worth(&app, "intruder", 10).await;
    let reply = redeem(&app, "intruder", &coupon, &order_id).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.json);
    assert_eq!(discount_fields(&app, &order_id).await, HashMap::new());
    app.stop().await;
}
