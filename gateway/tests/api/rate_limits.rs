//! Rate limits on the real stack: GCRA in Redis holds across two gateways; a refused purchase
//! or claim takes nothing; 429s carry `Retry-After` and the draft's `RateLimit-Policy` /
//! `RateLimit`; one user firing ten times its limit is refused while the others are admitted;
//! per-address limits follow the trusted proxies' `X-Forwarded-For` and nobody else's.

use std::sync::Arc;
use std::time::Instant;

use flashgate_config::{RateClass, RateKey, RateLimit, Settings};
use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::{PolicyKeys, SaleKeys, rate_limit_field};
use fred::prelude::{HashesInterface, KeysInterface, StreamsInterface};
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Reply, TestApp, sale_counters, spawn_app_with, start};

fn limit(class: RateClass, key: RateKey, rate: u32, burst: u32) -> RateLimit {
    RateLimit {
        class,
        key,
        rate,
        burst: Some(burst),
    }
}

/// These limits, the defaults for the rest (the test helpers' roomy ones replaced).
fn with_limits(settings: &mut Settings, limits: Vec<RateLimit>) {
    settings.rate_limits = limits;
}

fn header<'r>(reply: &'r Reply, name: &str) -> &'r str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A metric's value in `/metrics` (0 when the line is absent).
async fn metric(app: &TestApp, line_start: &str) -> u64 {
    app.metric(line_start).await.unwrap_or(0)
}

#[tokio::test]
async fn the_purchase_limit_holds_across_two_gateways_and_a_refused_purchase_takes_nothing() {
    // 1 a second, 4 at once, per user per sale: the two gateways share the budget, so 8
    // purchases in a moment get about 4 admitted (one more per second elapsed), not 8.
    let first =
        spawn_app_with(|s| with_limits(s, vec![limit(RateClass::Purchase, RateKey::User, 1, 4)]))
            .await;
    let second = start(first.settings.clone(), first.db.clone()).await;
    let sale_id = first
        .sale(json!({"stock": 100, "per_user_limit": 100}))
        .await;
    let started = Instant::now();
    let mut admitted: u64 = 0;
    let mut refused = Vec::new();
    for i in 0..8 {
        let app = if i % 2 == 0 { &first } else { &second };
        let reply = app.purchase(sale_id, "ann", 1).await;
        match reply.status {
            StatusCode::ACCEPTED => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => refused.push(reply),
            other => panic!("202 or 429, got {other}: {}", reply.json),
        }
    }
    let allowed = 4 + started.elapsed().as_secs() + 1;
    assert!(
        (4..=allowed).contains(&admitted) && admitted < 8,
        "admitted {admitted} of 8 (the burst is 4, shared by both gateways)"
    );
    assert_eq!(refused[0].code(), "rate_limited", "{}", refused[0].json);

    // Refused with an Idempotency-Key: no stored answer, no stock taken, no order.
    let keyed = first
        .purchase_with(
            sale_id,
            "ann",
            json!({"quantity": 1}),
            &[("idempotency-key", "limited-1")],
        )
        .await;
    assert_eq!(
        keyed.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        keyed.json
    );
    let keys = SaleKeys::new(&first.settings.redis.key_prefix, sale_id);
    let stored: bool = first
        .redis
        .exists(keys.idempotency("ann", "limited-1"))
        .await
        .expect("EXISTS");
    assert!(!stored, "a refused purchase stores no answer");
    let (stock, held, _, _) = sale_counters(&first, sale_id).await;
    assert_eq!(
        stock,
        100 - admitted as i64,
        "only admitted purchases took stock"
    );
    assert_eq!(held, admitted as i64);
    let bought: Option<i64> = first.redis.hget(&keys.buyers, "ann").await.expect("HGET");
    assert_eq!(bought, Some(admitted as i64));
    let events: u64 = first.redis.xlen(&keys.outbox).await.expect("XLEN");
    assert_eq!(
        events, admitted,
        "one admitted event per 202, none for a 429"
    );

    // Per user: another shopper of the same sale is admitted at once, on either gateway.
    assert_eq!(
        second.purchase(sale_id, "bob", 1).await.status,
        StatusCode::ACCEPTED
    );
    // Per sale: the same user buys in another sale.
    let other_sale = first.sale(json!({"stock": 5})).await;
    assert_eq!(
        first.purchase(other_sale, "ann", 1).await.status,
        StatusCode::ACCEPTED
    );
    // Ann's TAT is a field of the sale's buyers hash, at most one burst (4 × 1 s here) ahead
    // of the clock (Redis's; the same host's); the sale's cleanup removes it with the hash.
    let tat: Option<u64> = first
        .redis
        .hget(&keys.buyers, rate_limit_field("u:ann").as_slice())
        .await
        .expect("HGET");
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros(),
    )
    .expect("µs");
    let tat = tat.expect("ann's TAT in the buyers hash");
    assert!(
        (now - 1_000_000..=now + 4_000_000).contains(&tat),
        "TAT {tat} is not within a burst of {now}"
    );
    // A purchase in a sale that does not exist makes no buyers hash for the TATs (it would
    // have no owner to remove it).
    let ghost = SaleKeys::new(&first.settings.redis.key_prefix, sale_id + 1_000_000);
    assert_eq!(
        first.purchase(sale_id + 1_000_000, "ann", 1).await.status,
        StatusCode::NOT_FOUND
    );
    let made: bool = first.redis.exists(&ghost.buyers).await.expect("EXISTS");
    assert!(!made, "no buyers hash for a sale that does not exist");
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn limited_answers_carry_retry_after_and_the_draft_ratelimit_headers() {
    // Reads: 1 a second, 3 at once. Two gateways, one budget.
    let first = spawn_app_with(|s| {
        with_limits(
            s,
            vec![
                limit(RateClass::Read, RateKey::User, 1, 3),
                limit(RateClass::Purchase, RateKey::User, 1, 1),
            ],
        )
    })
    .await;
    let second = start(first.settings.clone(), first.db.clone()).await;
    let token = first.token("cara", Role::Shopper);
    let mut seen = Vec::new();
    for app in [&first, &second, &first] {
        let reply = app
            .request(Method::GET, "/v1/me/orders", Some(&token), &[], None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        assert_eq!(header(&reply, "ratelimit-policy"), r#""read-user";q=3;w=3"#);
        seen.push(header(&reply, "ratelimit").to_owned());
    }
    // What is left counts down across both gateways; one more comes within the second.
    assert_eq!(
        seen,
        [
            r#""read-user";r=2;t=1"#,
            r#""read-user";r=1;t=1"#,
            r#""read-user";r=0;t=1"#
        ]
    );
    let refused = second
        .request(Method::GET, "/v1/me/orders", Some(&token), &[], None)
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limited");
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        r#""read-user";q=3;w=3"#
    );
    assert_eq!(header(&refused, "ratelimit"), r#""read-user";r=0;t=1"#);

    // The purchase's limit, judged inside purchase.lua, answers the same way.
    let sale_id = first.sale(json!({"stock": 10, "per_user_limit": 5})).await;
    let bought = first.purchase(sale_id, "cara", 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.json);
    assert_eq!(
        header(&bought, "ratelimit-policy"),
        r#""purchase-user";q=1;w=1"#
    );
    let again = second.purchase(sale_id, "cara", 1).await;
    assert_eq!(
        again.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        again.json
    );
    assert_eq!(header(&again, "retry-after"), "1");
    assert_eq!(header(&again, "ratelimit"), r#""purchase-user";r=0;t=1"#);
    assert_eq!(
        header(&again, "ratelimit-policy"),
        r#""purchase-user";q=1;w=1"#
    );
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn one_user_firing_ten_times_the_limit_is_refused_while_other_users_are_admitted() {
    // The default purchase limit: 5 a second, 10 at once, per user per sale.
    let app = Arc::new(spawn_app_with(|s| with_limits(s, Vec::new())).await);
    let sale_id = app
        .sale(json!({"stock": 1000, "per_user_limit": 1000}))
        .await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // The abuser fires 120 purchases (twelve times the burst, 24 times the rate) in the same
    // moment as 10 shoppers buy one each.
    for i in 0..130 {
        let app = app.clone();
        let user = if i % 13 == 0 {
            format!("shopper-{i}")
        } else {
            "bot".to_owned()
        };
        tasks.spawn(async move { (app.purchase(sale_id, &user, 1).await, user) });
    }
    let (mut bot_admitted, mut bot_refused, mut shoppers_admitted) = (0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        let (reply, user) = done.expect("task");
        match (user.as_str(), reply.status) {
            ("bot", StatusCode::ACCEPTED) => bot_admitted += 1,
            ("bot", StatusCode::TOO_MANY_REQUESTS) => bot_refused += 1,
            (_, StatusCode::ACCEPTED) => shoppers_admitted += 1,
            (user, status) => panic!("{user}: {status} {}", reply.json),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 10 + (5.0 * elapsed).ceil() as u64;
    assert!(
        bot_admitted <= bound,
        "the bot got {bot_admitted} in {elapsed:.2} s (at most {bound})"
    );
    assert_eq!(bot_admitted + bot_refused, 120);
    assert!(bot_refused >= 120 - bound, "{bot_refused} refused");
    assert_eq!(
        shoppers_admitted, 10,
        "every other shopper is admitted as usual"
    );
    assert_eq!(
        metric(
            &app,
            r#"flashgate_rate_limited_total{class="purchase",key="user"} "#
        )
        .await,
        bot_refused
    );
    let (stock, ..) = sale_counters(&app, sale_id).await;
    assert_eq!(stock, 1000 - bot_admitted as i64 - 10);
}

#[tokio::test]
async fn a_refused_claim_takes_no_coupon() {
    let app =
        spawn_app_with(|s| with_limits(s, vec![limit(RateClass::Claim, RateKey::User, 1, 2)]))
            .await;
    let policy_id = app
        .policy(json!({"total_quantity": 10, "per_user_limit": 10}))
        .await;
    let statuses: Vec<StatusCode> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(app.claim(policy_id, "dan", &[]).await.status);
        }
        out
    };
    let issued = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert!(
        (2..=3).contains(&issued) && statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let keys = PolicyKeys::new(&app.settings.redis.key_prefix, policy_id);
    let remaining: i64 = app.redis.get(&keys.remaining).await.expect("GET");
    assert_eq!(remaining, 10 - issued as i64);
    let held: Option<i64> = app.redis.hget(&keys.holders, "dan").await.expect("HGET");
    assert_eq!(held, Some(issued as i64));
    let refused = app.claim(policy_id, "dan", &[]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "ratelimit"), r#""claim-user";r=0;t=1"#);
}

#[tokio::test]
async fn per_address_limits_follow_the_trusted_proxys_forwarded_for_and_ignore_anyone_elses() {
    // Behind a trusted proxy (this test's client, 127.0.0.1): shoppers are told apart by the
    // address the proxy appended; the per-user limits stay roomy.
    let proxied = spawn_app_with(|s| {
        s.gateway.trusted_proxies = vec!["127.0.0.1".into()];
        with_limits(
            s,
            vec![
                limit(RateClass::Purchase, RateKey::Address, 1, 2),
                limit(RateClass::Purchase, RateKey::User, 1000, 1000),
            ],
        );
    })
    .await;
    let sale_id = proxied.sale(json!({"stock": 100})).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        // Different users at one address; each forges a different leftmost hop, which the
        // rightmost-untrusted rule ignores.
        let forged = format!("203.0.113.{i}, 198.51.100.7");
        let reply = proxied
            .purchase_with(
                sale_id,
                &format!("user-{i}"),
                json!({"quantity": 1}),
                &[("x-forwarded-for", &forged)],
            )
            .await;
        statuses.push(reply.status);
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(header(&reply, "ratelimit"), r#""purchase-address";r=0;t=1"#);
        }
    }
    assert_eq!(&statuses[..2], [StatusCode::ACCEPTED, StatusCode::ACCEPTED]);
    assert!(
        statuses[2..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Another address behind the same proxy has its own budget.
    let elsewhere = proxied
        .purchase_with(
            sale_id,
            "user-9",
            json!({"quantity": 1}),
            &[("x-forwarded-for", "198.51.100.8")],
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::ACCEPTED, "{}", elsewhere.json);

    // A peer that is not a trusted proxy: its X-Forwarded-For is ignored, so every request
    // counts against the peer's own address however it varies the header.
    let direct = spawn_app_with(|s| {
        s.gateway.trusted_proxies = vec!["10.0.0.0/8".into()];
        with_limits(
            s,
            vec![
                limit(RateClass::Purchase, RateKey::Address, 1, 2),
                limit(RateClass::Purchase, RateKey::User, 1000, 1000),
            ],
        );
    })
    .await;
    let sale_id = direct.sale(json!({"stock": 100})).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let reply = direct
            .purchase_with(
                sale_id,
                &format!("user-{i}"),
                json!({"quantity": 1}),
                &[("x-forwarded-for", &format!("198.51.100.{i}"))],
            )
            .await;
        statuses.push(reply.status);
    }
    assert_eq!(&statuses[..2], [StatusCode::ACCEPTED, StatusCode::ACCEPTED]);
    assert!(
        statuses[2..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    direct.stop().await;
    proxied.stop().await;
}
