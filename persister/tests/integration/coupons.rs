//! Coupon events against real Kafka (tansu) and MariaDB: replays and stale changes change
//! nothing, and the database's guards refuse what Redis should never have issued.

use chrono::{Duration, Utc};
use flashgate_events::{
    COUPON_ISSUED, COUPON_REDEEMED, COUPON_REDEMPTION_CANCELLED, CouponIssued, CouponRedemption,
    Envelope,
};
use flashgate_testkit::unique;

use crate::persisting::{Running, read_topic, start};

pub async fn policy(running: &Running, total: u32) -> u64 {
    sqlx::query(
        "INSERT INTO coupon_policies (name, discount_kind, discount_value, total_quantity, \
         per_user_limit, claim_starts_at, claim_ends_at, valid_for_seconds) \
         VALUES ('P', 'amount', 100, ?, 1, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) + INTERVAL 1 HOUR, 3600)",
    )
    .bind(total)
    .execute(&running.db)
    .await
    .expect("policy")
    .last_insert_id()
}

pub fn issued(policy_id: u64, user: &str) -> CouponIssued {
    CouponIssued {
        coupon_id: format!("{policy_id}-{}", unique("c")),
        policy_id,
        user_id: user.to_owned(),
        claim_no: 1,
        issued_at: Utc::now(),
        expires_at: Utc::now() + Duration::hours(1),
    }
}

/// Sends `coupon.issued` under `key` (its own id, unless a test needs another partition order).
pub async fn send_issued_keyed(running: &Running, coupon: &CouponIssued, key: &str) {
    let id = format!("{COUPON_ISSUED}:{}", coupon.coupon_id);
    let envelope = Envelope::v1(COUPON_ISSUED, id, Utc::now(), "t".into(), coupon.clone());
    let payload = serde_json::to_vec(&envelope).expect("json");
    let topic = running.settings.kafka.coupons_topic.clone();
    running.send_to(&topic, key, &payload).await;
}

pub async fn send_issued(running: &Running, coupon: &CouponIssued) {
    send_issued_keyed(running, coupon, &coupon.coupon_id).await;
}

pub async fn send_change(
    running: &Running,
    coupon: &CouponIssued,
    kind: &str,
    seq: u64,
    order: &str,
) {
    let change = CouponRedemption {
        coupon_id: coupon.coupon_id.clone(),
        policy_id: coupon.policy_id,
        user_id: coupon.user_id.clone(),
        order_id: order.to_owned(),
        discount: if kind == COUPON_REDEEMED { 100 } else { 0 },
        seq,
        at: Utc::now(),
    };
    let id = format!("{kind}:{}:{seq}", coupon.coupon_id);
    let envelope = Envelope::v1(kind, id, Utc::now(), "t".into(), change);
    let payload = serde_json::to_vec(&envelope).expect("json");
    let topic = running.settings.kafka.coupons_topic.clone();
    running.send_to(&topic, &coupon.coupon_id, &payload).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_coupon_events_and_stale_changes_change_nothing() {
    let running = start().await;
    let policy_id = policy(&running, 5).await;
    let coupon = issued(policy_id, "ada");
    for _ in 0..3 {
        send_issued(&running, &coupon).await;
    }
    send_change(&running, &coupon, COUPON_REDEEMED, 2, "1-a").await;
    send_change(&running, &coupon, COUPON_REDEEMED, 2, "1-a").await;
    send_change(&running, &coupon, COUPON_REDEMPTION_CANCELLED, 3, "1-a").await;
    // A replay of the older redemption after the cancel must not redeem it again.
    send_change(&running, &coupon, COUPON_REDEEMED, 2, "1-a").await;
    // The last message, on the same partition (same key): once it is stored, everything
    // before it was handled.
    let marker = issued(policy_id, "bob");
    send_issued_keyed(&running, &marker, &coupon.coupon_id).await;

    let sql = format!(
        "SELECT COUNT(*) FROM coupons WHERE coupon_id = '{}'",
        marker.coupon_id
    );
    assert_eq!(running.wait_count(&sql, 1).await, 1);
    let (status, seq, order): (String, u64, Option<String>) =
        sqlx::query_as("SELECT status, seq, order_id FROM coupons WHERE coupon_id = ?")
            .bind(&coupon.coupon_id)
            .fetch_one(&running.db)
            .await
            .expect("coupon");
    assert_eq!((status.as_str(), seq, order), ("issued", 3, None));
    let counter: u32 = sqlx::query_scalar("SELECT issued FROM coupon_policies WHERE policy_id = ?")
        .bind(policy_id)
        .fetch_one(&running.db)
        .await
        .expect("policy");
    assert_eq!(counter, 2, "ada's coupon counted once, plus bob's");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupons_beyond_the_total_or_the_users_limit_are_stored_rejected_and_announced() {
    let running = start().await;
    let policy_id = policy(&running, 2).await;
    // As if Redis lost writes in a failover: rita's claim number 1 twice, and four coupons
    // for a total of two. One key keeps them on one partition, in this order, so each guard
    // meets its own case: rita's second copy while one coupon is left (only her limit can
    // refuse it), tom's after sam took the last (only the total can refuse it).
    let [rita, rita_again, sam, tom] = [
        issued(policy_id, "rita"),
        issued(policy_id, "rita"),
        issued(policy_id, "sam"),
        issued(policy_id, "tom"),
    ];
    let key = format!("policy-{policy_id}");
    for coupon in [&rita, &rita_again, &sam, &tom] {
        send_issued_keyed(&running, coupon, &key).await;
    }

    let rows = running.wait_count("SELECT COUNT(*) FROM coupons", 4).await;
    let settings = running.settings.clone();
    let topic = settings.kafka.compensations_topic.clone();
    let announced = tokio::task::spawn_blocking(move || read_topic(&settings, &topic, 2))
        .await
        .expect("reader");

    assert_eq!(rows, 4, "refused coupons are stored, not dropped");
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM coupons GROUP BY status ORDER BY status")
            .fetch_all(&running.db)
            .await
            .expect("rows");
    assert_eq!(
        by_status,
        vec![("issued".to_owned(), 2), ("rejected".to_owned(), 2)]
    );
    let mut statuses = Vec::new();
    for coupon in [&rita, &rita_again, &sam, &tom] {
        let status: String = sqlx::query_scalar("SELECT status FROM coupons WHERE coupon_id = ?")
            .bind(&coupon.coupon_id)
            .fetch_one(&running.db)
            .await
            .expect("coupon");
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        ["issued", "rejected", "issued", "rejected"],
        "rita's second copy refused by her limit, tom's by the total"
    );
    let counter: u32 = sqlx::query_scalar("SELECT issued FROM coupon_policies WHERE policy_id = ?")
        .bind(policy_id)
        .fetch_one(&running.db)
        .await
        .expect("policy");
    assert_eq!(counter, 2, "issued never passes total");
    let rejected: Vec<String> =
        sqlx::query_scalar("SELECT coupon_id FROM coupons WHERE status = 'rejected'")
            .fetch_all(&running.db)
            .await
            .expect("rows");
    let mut keys: Vec<String> = announced.into_iter().map(|(key, _)| key).collect();
    keys.sort();
    let mut expected = rejected;
    expected.sort();
    assert_eq!(keys, expected, "each refused coupon is announced");
    running.stop().await;
}
