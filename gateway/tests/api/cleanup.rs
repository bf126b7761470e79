//! Every key has an owner: a coupon policy whose coupons have all expired loses its Redis keys
//! after the grace (not before, not while its outbox holds events, and restore does not bring
//! it back); a point cache expires once nothing of it is pending and is rebuilt from MySQL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flashgate_config::Settings;
use flashgate_events::keys::{PointsKeys, PolicyKeys, live_policies};
use flashgate_gateway::app::App;
use flashgate_gateway::auth::Role;
use flashgate_gateway::coupons::cleanup::sweep_policies;
use flashgate_gateway::startup::Application;
use fred::prelude::{ClientLike, HashesInterface, KeysInterface, SetsInterface, StreamsInterface};
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, eventually, points_balance, redis_now_ms, spawn_app_with};

/// Grace after a policy's end in these tests, in ms.
const GRACE_MS: u64 = 2_000;

/// A gateway whose own lifecycle sweeper runs once at start and then sleeps, so the tests
/// decide when policies are swept; coupons outlive their expiry by [`GRACE_MS`].
async fn gateway(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.gateway.sale_cleanup_grace_ms = GRACE_MS;
        s.gateway.lifecycle_sweep_interval_ms = 3_600_000;
        adjust(s);
    })
    .await
}

/// The shared state of a second gateway on the same Redis, MySQL and prefix (it is not served:
/// the tests call the sweep with it).
async fn state_of(app: &TestApp) -> Arc<App> {
    Application::build(app.settings.clone())
        .await
        .expect("gateway builds")
        .app()
}

/// A coupon policy in a test.
struct Ending {
    id: u64,
    keys: PolicyKeys,
    /// When its last coupon expires, by Redis's clock (`redeem_until_ms`).
    until: i64,
    /// The keys of its coupons.
    coupons: Vec<String>,
}

/// A policy whose claims close and whose coupons all expire 3 s from now (time for a slow
/// machine to claim); `claims` users claim one each. Each coupon's hash is checked to expire
/// by itself the grace after the coupon.
async fn ending_policy(app: &TestApp, claims: usize) -> Ending {
    let ends = (chrono::Utc::now() + chrono::Duration::milliseconds(3_000)).to_rfc3339();
    let policy_id = app
        .policy(json!({"claim_ends_at": ends, "expires_at": ends, "valid_for_seconds": null}))
        .await;
    let keys = PolicyKeys::new(&app.settings.redis.key_prefix, policy_id);
    let until: i64 = app
        .redis
        .hget(&keys.policy, "redeem_until_ms")
        .await
        .expect("redeem_until_ms");
    let mut coupons = Vec::new();
    for n in 0..claims {
        let claimed = app.claim(policy_id, &format!("holder-{n}"), &[]).await;
        assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.json);
        let coupon = keys.coupon(claimed.json["coupon_id"].as_str().expect("coupon id"));
        coupons.push(coupon.clone());
        let expires_at: i64 = app
            .redis
            .next()
            .custom(fred::cmd!("PEXPIRETIME"), vec![coupon.as_str()])
            .await
            .expect("PEXPIRETIME");
        assert_eq!(expires_at, until + GRACE_MS as i64, "{coupon} owns a TTL");
    }
    Ending {
        id: policy_id,
        keys,
        until,
        coupons,
    }
}

/// The policy's keys and `coupons` that Redis still holds (expired ones are not listed).
/// Each is looked up by name: a `SCAN` of the shared test Redis would walk every test's keys.
async fn keys_of(app: &TestApp, keys: &PolicyKeys, coupons: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for key in [&keys.policy, &keys.remaining, &keys.holders, &keys.outbox]
        .into_iter()
        .chain(coupons)
    {
        let present: bool = app.redis.exists(key).await.expect("EXISTS");
        if present {
            found.push(key.clone());
        }
    }
    found
}

/// Waits until the policy's keys are all gone: the cleanup removed them, and a relay that read
/// the outbox a moment before may make it again, which its retirement then deletes.
async fn wait_until_gone(app: &TestApp, keys: &PolicyKeys, coupons: &[String]) {
    assert!(
        eventually(|| async { keys_of(app, keys, coupons).await.is_empty() }).await,
        "left behind: {:?}",
        keys_of(app, keys, coupons).await
    );
}

async fn wait_for_redis_time(app: &TestApp, at_ms: i64) {
    assert!(
        eventually(|| async { redis_now_ms(app).await >= at_ms }).await,
        "Redis's clock never reached {at_ms}"
    );
}

async fn wait_until_relayed(app: &TestApp, keys: &PolicyKeys) {
    let outbox = keys.outbox.clone();
    assert!(
        eventually(|| async { app.redis.xlen::<u64, _>(&outbox).await.expect("XLEN") == 0 }).await,
        "the policy's events never reached Kafka"
    );
}

/// Whether the policy is on the live list.
async fn is_live(app: &TestApp, id: u64) -> bool {
    app.redis
        .sismember(live_policies(&app.settings.redis.key_prefix), id)
        .await
        .expect("SISMEMBER")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_whose_coupons_expired_loses_every_key_after_the_grace_and_restore_leaves_it_out()
{
    let app = gateway(|s| s.gateway.relay_retire_grace_ms = 500).await;
    let state = state_of(&app).await;
    let live_id = app.policy(json!({})).await;
    let claimed = app.claim(live_id, "keeper", &[]).await;
    let kept = vec![
        PolicyKeys::new(&app.settings.redis.key_prefix, live_id)
            .coupon(claimed.json["coupon_id"].as_str().unwrap_or_default()),
    ];
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.json);
    let ended = ending_policy(&app, 3).await;
    let live = PolicyKeys::new(&app.settings.redis.key_prefix, live_id);
    wait_until_relayed(&app, &ended.keys).await;

    // Over, but not by the grace yet: nothing is removed.
    wait_for_redis_time(&app, ended.until).await;
    assert_eq!(sweep_policies(&state, GRACE_MS).await.expect("sweep"), 0);
    let before_the_grace = keys_of(&app, &ended.keys, &ended.coupons).await.len();
    // Read first, then make sure it was read before the grace ended (the coupons' own TTL).
    assert!(
        redis_now_ms(&app).await < ended.until + GRACE_MS as i64,
        "the test was too slow to look before the grace ended"
    );
    assert_eq!(
        before_the_grace,
        4 + 3,
        "policy, remaining, holders, outbox and the coupons"
    );

    // Over by the grace: every key of it goes, and it leaves the live list.
    wait_for_redis_time(&app, ended.until + GRACE_MS as i64).await;
    assert_eq!(sweep_policies(&state, GRACE_MS).await.expect("sweep"), 1);
    wait_until_gone(&app, &ended.keys, &ended.coupons).await;
    assert!(!is_live(&app, ended.id).await);
    assert_eq!(
        sweep_policies(&state, GRACE_MS).await.expect("sweep"),
        0,
        "removed once"
    );

    // The live policy is untouched.
    assert_eq!(keys_of(&app, &live, &kept).await.len(), 4 + 1);
    assert!(is_live(&app, live_id).await);

    // A restore does not bring it back; a claim answers as for any policy that is over.
    let token = app.token("ops-1", Role::Ops);
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
    assert_eq!(restored.json["restored_policies"], 0, "{}", restored.json);
    let late = app.claim(ended.id, "latecomer", &[]).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.json);
    assert_eq!(late.code(), "policy_not_active");
    assert_eq!(
        keys_of(&app, &ended.keys, &ended.coupons).await,
        Vec::<String>::new()
    );
    assert!(!is_live(&app, ended.id).await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_over_by_the_grace_keeps_its_keys_while_its_outbox_holds_events() {
    // No broker answers: the claims' events stay in the outbox.
    let app = gateway(|s| {
        s.kafka.brokers = "127.0.0.1:9".into();
        s.kafka.message_timeout_ms = 600_000;
    })
    .await;
    let state = state_of(&app).await;
    let ended = ending_policy(&app, 2).await;
    wait_for_redis_time(&app, ended.until + GRACE_MS as i64).await;

    assert_eq!(sweep_policies(&state, GRACE_MS).await.expect("sweep"), 0);
    let outbox: u64 = app.redis.xlen(&ended.keys.outbox).await.expect("XLEN");
    assert_eq!(outbox, 2, "both claims wait for Kafka");
    let keys = &ended.keys;
    for key in [&keys.policy, &keys.remaining, &keys.holders, &keys.outbox] {
        let present: bool = app.redis.exists(key).await.expect("EXISTS");
        assert!(present, "{key} kept while its events wait");
    }
    assert!(is_live(&app, ended.id).await);

    // Once the events are delivered (the relay deletes them), the keys go.
    let _: u64 = app
        .redis
        .xtrim(&keys.outbox, ("MAXLEN", 0))
        .await
        .expect("XTRIM");
    assert_eq!(sweep_policies(&state, GRACE_MS).await.expect("sweep"), 1);
    wait_until_gone(&app, keys, &ended.coupons).await;
    assert!(!is_live(&app, ended.id).await);
}

/// The user's point cache: its fields and its TTL in ms (-1: none, -2: no key).
async fn point_cache(app: &TestApp, user: &str) -> (HashMap<String, String>, i64) {
    let key = PointsKeys::for_user(&app.settings.redis.key_prefix, user).balance(user);
    let fields: HashMap<String, String> = app.redis.hgetall(&key).await.expect("HGETALL");
    let ttl: i64 = app.redis.pttl(&key).await.expect("PTTL");
    (fields, ttl)
}

fn pending_changes(fields: &HashMap<String, String>) -> usize {
    fields.keys().filter(|f| f.starts_with("tx:")).count()
}

/// `amount` points of `user` spent on a new order of theirs; the txid.
async fn spend(app: &TestApp, user: &str, amount: i64) -> String {
    let sale = app.sale(json!({ "price": 1_000_000, "stock": 10 })).await;
    let order = app.purchase(sale, user, 1).await;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.json);
    let token = app.token(user, Role::Shopper);
    let body = json!({"amount": amount, "order_id": order.json["order_id"]});
    let used = app
        .request(
            Method::POST,
            "/v1/me/points/use",
            Some(&token),
            &[],
            Some(body),
        )
        .await;
    assert_eq!(used.status, StatusCode::CREATED, "{}", used.json);
    used.json["txid"].as_str().expect("txid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_cache_expires_only_with_nothing_pending_and_is_rebuilt_from_mysql() {
    let ttl_secs = 2;
    let app = gateway(|s| {
        s.points.cache_ttl_secs = ttl_secs;
        s.points.earn_basis_points = 0;
    })
    .await;
    let user = "fleeting";
    app.grant_points(user, 100).await;

    // A rebuild (the first read) gives the cache its TTL.
    assert_eq!(points_balance(&app, user).await, 100);
    let (_, ttl) = point_cache(&app, user).await;
    assert!((1..=2_000).contains(&ttl), "filled: {ttl}");

    // A use is pending until the persister writes it: no TTL, however long that takes.
    let txid = spend(&app, user, 30).await;
    let (fields, ttl) = point_cache(&app, user).await;
    assert_eq!((pending_changes(&fields), ttl), (1, -1), "{fields:?}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        points_balance(&app, user).await,
        70,
        "kept past its TTL while pending"
    );

    // Written and settled: the settle gives the TTL back; the cache then goes, and the next
    // read rebuilds the same balance from MySQL.
    let persister = app.start_persister().await;
    let settled = || async {
        let (fields, ttl) = point_cache(&app, user).await;
        pending_changes(&fields) == 0 && ttl > 0
    };
    assert!(
        eventually(settled).await,
        "{:?}",
        point_cache(&app, user).await
    );
    let gone = || async { point_cache(&app, user).await.1 == -2 };
    assert!(eventually(gone).await, "the cache expired");
    assert_eq!(points_balance(&app, user).await, 70, "rebuilt from MySQL");
    assert_eq!(point_cache(&app, user).await.0["version"], "2");

    // A refund is pending like a use; settled, it lets the cache go again.
    assert!(eventually(gone).await);
    let back = crate::helpers::cancel_use(&app, user, &txid).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.json);
    assert_eq!(back.json["balance"], 100, "refunded on a rebuilt cache");
    assert!(
        eventually(settled).await,
        "{:?}",
        point_cache(&app, user).await
    );
    assert!(eventually(gone).await, "the cache expired again");
    assert_eq!(points_balance(&app, user).await, 100);
    persister.stop().await;
    app.stop().await;
}
