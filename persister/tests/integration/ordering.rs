//! Events that reach the persister before the record they change (several relays, and a
//! relay's re-send after a crash, can reorder one coupon's or one user's events): a coupon's
//! redemption before the coupon, a refund of points before their use. Delivered in either
//! order — in one batch or across two — they end in the same MySQL state and the same
//! settled cache, and nothing stays parked.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flashgate_events::keys::PointsKeys;
use flashgate_events::{COUPON_REDEEMED, COUPON_REDEMPTION_CANCELLED, CouponIssued};
use fred::prelude::{HashesInterface, Pool};

use crate::coupons::{issued, policy, send_change, send_issued};
use crate::persisting::{Running, prepare, start};
use crate::points::{balance_row, cache, fields, give, send_refund, send_use};

/// What MySQL holds of a coupon: status, seq, order, discount, and whether it has a
/// redemption time.
type CouponRow = (String, u64, Option<String>, Option<u64>, bool);

async fn coupon_row(running: &Running, coupon: &CouponIssued) -> CouponRow {
    let (status, seq, order, discount, at): (
        String,
        u64,
        Option<String>,
        Option<u64>,
        Option<chrono::NaiveDateTime>,
    ) = sqlx::query_as(
        "SELECT status, seq, order_id, discount, redeemed_at FROM coupons WHERE coupon_id = ?",
    )
    .bind(&coupon.coupon_id)
    .fetch_one(&running.db)
    .await
    .expect("coupon row");
    (status, seq, order, discount, at.is_some())
}

async fn wait_for(running: &Running, sql: String, expected: i64) {
    assert_eq!(running.wait_count(&sql, expected).await, expected, "{sql}");
}

async fn parked(running: &Running, waits_for: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM parked_events WHERE waits_for = ?")
        .bind(waits_for)
        .fetch_one(&running.db)
        .await
        .expect("parked events")
}

/// Waits until the persister's parked gauge reads `expected`.
async fn gauge_reads(running: &Running, expected: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if running.metrics.parked.load(Ordering::Relaxed) == expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn redeemed_on(order: &str) -> CouponRow {
    ("redeemed".into(), 2, Some(order.into()), Some(100), true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coupon_change_that_arrives_before_its_coupon_waits_and_ends_as_if_in_order() {
    let running = start().await;
    let policy_id = policy(&running, 10).await;
    let stored = |c: &CouponIssued| {
        format!(
            "SELECT COUNT(*) FROM coupons WHERE coupon_id = '{}'",
            c.coupon_id
        )
    };
    let redeemed = |c: &CouponIssued| {
        format!(
            "SELECT COUNT(*) FROM coupons WHERE coupon_id = '{}' AND status = 'redeemed'",
            c.coupon_id
        )
    };
    let at_seq = |c: &CouponIssued, seq: u64| {
        format!(
            "SELECT COUNT(*) FROM coupons WHERE coupon_id = '{}' AND seq = {seq}",
            c.coupon_id
        )
    };

    // In order: issued, then redeemed.
    let in_order = issued(policy_id, "ivy");
    send_issued(&running, &in_order).await;
    wait_for(&running, stored(&in_order), 1).await;
    send_change(&running, &in_order, COUPON_REDEEMED, 2, "1-ivy").await;
    wait_for(&running, redeemed(&in_order), 1).await;

    // Reversed, across two batches: the redemption waits until its coupon is stored.
    let reversed = issued(policy_id, "rex");
    send_change(&running, &reversed, COUPON_REDEEMED, 2, "1-rex").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while parked(&running, &reversed.coupon_id).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the early redemption never parked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gauge_reads(&running, 1).await, "the parked gauge shows it");
    send_issued(&running, &reversed).await;
    wait_for(&running, redeemed(&reversed), 1).await;

    // A redemption and its cancellation, both before the coupon, delivered newest first.
    let undone = issued(policy_id, "uma");
    send_change(&running, &undone, COUPON_REDEMPTION_CANCELLED, 3, "1-uma").await;
    send_change(&running, &undone, COUPON_REDEEMED, 2, "1-uma").await;
    send_issued(&running, &undone).await;
    wait_for(&running, at_seq(&undone, 3), 1).await;

    // Reversed in one batch: produced before a persister consumes.
    let mut batched = prepare().await;
    let policy_b = policy(&batched, 10).await;
    let together = issued(policy_b, "tom");
    send_change(&batched, &together, COUPON_REDEEMED, 2, "1-tom").await;
    send_issued(&batched, &together).await;
    batched.resume().await;
    wait_for(&batched, redeemed(&together), 1).await;

    assert_eq!(coupon_row(&running, &in_order).await, redeemed_on("1-ivy"));
    assert_eq!(coupon_row(&running, &reversed).await, redeemed_on("1-rex"));
    assert_eq!(coupon_row(&batched, &together).await, redeemed_on("1-tom"));
    assert_eq!(
        coupon_row(&running, &undone).await,
        ("issued".into(), 3, None, None, false),
        "the newest change wins whatever the arrival order"
    );
    let issued_count: u32 =
        sqlx::query_scalar("SELECT issued FROM coupon_policies WHERE policy_id = ?")
            .bind(policy_id)
            .fetch_one(&running.db)
            .await
            .expect("policy");
    assert_eq!(issued_count, 3, "each coupon counted once");
    for db in [&running.db, &batched.db] {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM parked_events")
            .fetch_one(db)
            .await
            .expect("parked");
        assert_eq!(left, 0, "applied events leave the parked table");
    }
    assert!(
        gauge_reads(&running, 0).await,
        "the parked gauge is back to 0"
    );
    let parked_total = running.metrics.parked_total.load(Ordering::Relaxed);
    let unparked_total = running.metrics.unparked_total.load(Ordering::Relaxed);
    assert!(
        parked_total >= 1,
        "rex's redemption at least waited in MySQL"
    );
    assert_eq!(
        unparked_total, parked_total,
        "every parked change was applied"
    );
    let dead = running.metrics.dead_lettered.load(Ordering::Relaxed);
    assert_eq!(dead, 0, "nothing dead-lettered");
    running.stop().await;
    batched.stop().await;
}

/// A point cache as the gateway leaves it after a use of 60 and its cancellation, both still
/// pending, on a MySQL balance of 100 at version 1.
async fn cache_with_use_and_refund(running: &Running, redis: &Pool, user: &str, use_txid: &str) {
    let key = cache_key(running, user);
    let refund_txid = flashgate_events::refund_txid(use_txid).expect("refund txid");
    let _: () = redis
        .next()
        .hset(
            &key,
            fields(&[
                ("balance", "100"),
                ("version", "1"),
                ("pending", "0"),
                (&format!("tx:{use_txid}"), "60"),
                (&format!("tx:{refund_txid}"), "-60"),
            ]),
        )
        .await
        .expect("HSET");
}

fn cache_key(running: &Running, user: &str) -> String {
    let prefix = &running.settings.redis.key_prefix;
    PointsKeys::for_user(prefix, user).balance(user)
}

/// The user's ledger (txid, delta, reason) without the initial grant, in txid order.
async fn ledger(running: &Running, user: &str) -> Vec<(String, i64, String)> {
    sqlx::query_as(
        "SELECT txid, delta, reason FROM point_ledger WHERE user_id = ? AND reason <> 'adjust' \
         ORDER BY txid DESC",
    )
    .bind(user)
    .fetch_all(&running.db)
    .await
    .expect("ledger")
}

/// After a use of 60 and its refund, whatever their order: balance 100 in MySQL, both rows in
/// the ledger, and a cache equal to MySQL with nothing pending.
async fn assert_settled(running: &Running, redis: &Pool, user: &str) {
    let use_txid = format!("use-{user}");
    let refund_txid = flashgate_events::refund_txid(&use_txid).expect("refund txid");
    assert_eq!(
        ledger(running, user).await,
        vec![
            (use_txid.clone(), -60, "use".to_owned()),
            (refund_txid, 60, "refund".to_owned()),
        ],
        "{user}"
    );
    let (balance, version) = balance_row(running, user).await;
    assert_eq!(balance, 100, "{user} keeps every point");
    let key = cache_key(running, user);
    let deadline = Instant::now() + Duration::from_secs(10);
    let expected = fields(&[
        ("balance", "100"),
        ("version", &version.to_string()),
        ("pending", "0"),
    ]);
    while cache(redis, &key).await != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cache(redis, &key).await,
        expected,
        "{user}'s cache is settled"
    );
    assert_eq!(
        parked(running, &use_txid).await,
        0,
        "{user}: nothing left parked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_that_arrives_before_its_use_waits_and_ends_as_if_in_order() {
    let running = start().await;
    let redis = running.settings.redis.connect_pool().await.expect("Redis");
    let rows = |user: &str, n: i64| {
        (
            format!("SELECT COUNT(*) FROM point_ledger WHERE user_id = '{user}'"),
            n,
        )
    };

    // In order: the use, then its refund.
    give(&running, "ina", 100).await;
    cache_with_use_and_refund(&running, &redis, "ina", "use-ina").await;
    send_use(&running, "ina", "use-ina", 60).await;
    let (sql, n) = rows("ina", 2);
    wait_for(&running, sql, n).await;
    send_refund(&running, "ina", "use-ina", 60).await;
    let (sql, n) = rows("ina", 3);
    wait_for(&running, sql, n).await;

    // Reversed, across two batches: the refund waits for its use.
    give(&running, "rae", 100).await;
    cache_with_use_and_refund(&running, &redis, "rae", "use-rae").await;
    send_refund(&running, "rae", "use-rae", 60).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while parked(&running, "use-rae").await == 0 {
        assert!(Instant::now() < deadline, "the early refund never parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gauge_reads(&running, 1).await, "the parked gauge shows it");
    assert_eq!(
        balance_row(&running, "rae").await.0,
        100,
        "nothing decided yet"
    );
    send_use(&running, "rae", "use-rae", 60).await;
    let (sql, n) = rows("rae", 3);
    wait_for(&running, sql, n).await;

    // Reversed in one batch: produced before a persister consumes.
    let mut batched = prepare().await;
    let batched_redis = batched.settings.redis.connect_pool().await.expect("Redis");
    give(&batched, "tia", 100).await;
    cache_with_use_and_refund(&batched, &batched_redis, "tia", "use-tia").await;
    send_refund(&batched, "tia", "use-tia", 60).await;
    send_use(&batched, "tia", "use-tia", 60).await;
    batched.resume().await;
    let (sql, n) = rows("tia", 3);
    wait_for(&batched, sql, n).await;

    assert_settled(&running, &redis, "ina").await;
    assert_settled(&running, &redis, "rae").await;
    assert_settled(&batched, &batched_redis, "tia").await;
    assert!(
        gauge_reads(&running, 0).await,
        "the parked gauge is back to 0"
    );
    let refused = running.metrics.points_refused.load(Ordering::Relaxed);
    assert_eq!(refused, 0, "no refund refused for arriving early");
    running.stop().await;
    batched.stop().await;
}
