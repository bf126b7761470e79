//! Dead letters from the coupons and points topics: a coupon of a policy MySQL does not hold, a
//! change to a coupon whose policy MySQL does not hold, and a use of points that can never be
//! stored each go to the dead-letter topic with their reason and source, and the rest of the
//! batch is stored.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use flashgate_events::{COUPON_REDEEMED, Envelope, POINTS_USED, PointsUsed};

use crate::coupons::{issued, policy, send_change, send_issued};
use crate::persisting::{Running, start, wait_for};
use crate::points::{give, send_use};

/// Sends a `points.used` of `user` on `order_id` as the gateway would.
async fn send_use_on(running: &Running, user: &str, txid: &str, order_id: &str) {
    let data = PointsUsed {
        txid: txid.to_owned(),
        user_id: user.to_owned(),
        amount: 10,
        order_id: order_id.to_owned(),
        at: Utc::now(),
    };
    let envelope = Envelope::v1(POINTS_USED, txid.to_owned(), Utc::now(), "t".into(), data);
    let topic = running.settings.kafka.points_topic.clone();
    running
        .send_to(&topic, user, &serde_json::to_vec(&envelope).expect("json"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupons_and_uses_that_can_never_be_stored_are_dead_lettered_and_the_rest_is_stored() {
    let running = start().await;
    let held = policy(&running, 5).await;
    give(&running, "pia", 100).await;

    // Never storable: a coupon of a policy MySQL does not hold, a redemption of a coupon that
    // is not stored and whose policy MySQL does not hold either, and a use on an order id
    // longer than any order's.
    let orphan = issued(held + 1_000, "ula");
    send_issued(&running, &orphan).await;
    let hopeless = issued(held + 2_000, "hal");
    send_change(&running, &hopeless, COUPON_REDEEMED, 2, "1-a").await;
    send_use_on(&running, "pia", "use-p1", &format!("1-{}", "x".repeat(60))).await;
    // Storable, on the same topics.
    let fine = issued(held, "fay");
    send_issued(&running, &fine).await;
    send_use(&running, "pia", "use-p2", 10).await;

    assert_eq!(wait_for(&running.metrics.dead_lettered, 3).await, 3);
    let stored_coupon = "SELECT COUNT(*) FROM coupons WHERE status = 'issued'";
    assert_eq!(running.wait_count(stored_coupon, 1).await, 1);
    let stored_use = "SELECT COUNT(*) FROM point_ledger WHERE txid = 'use-p2'";
    assert_eq!(running.wait_count(stored_use, 1).await, 1);
    let settings = running.settings.clone();
    let topic = settings.kafka.dead_letter_topic.clone();
    let dead: HashMap<String, HashMap<String, String>> = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &topic,
            3,
            Duration::from_secs(60),
            Duration::from_secs(2),
        )
    })
    .await
    .expect("reader")
    .into_iter()
    .map(|m| (m.key, m.headers))
    .collect();

    let coupons_topic = running.settings.kafka.coupons_topic.as_str();
    let points_topic = running.settings.kafka.points_topic.as_str();
    let expected = [
        (
            orphan.coupon_id.as_str(),
            coupons_topic,
            "its coupon policy does not exist",
        ),
        (
            hopeless.coupon_id.as_str(),
            coupons_topic,
            "neither its coupon nor the coupon's policy exists",
        ),
        ("pia", points_topic, "order"),
    ];
    assert_eq!(dead.len(), 3, "exactly these three: {dead:?}");
    for (key, source, reason) in expected {
        let headers = dead
            .get(key)
            .unwrap_or_else(|| panic!("{key} dead-lettered: {dead:?}"));
        assert_eq!(headers["source_topic"], source, "{key}");
        assert!(headers["reason"].contains(reason), "{key}: {headers:?}");
        assert!(headers["source_offset"].parse::<i64>().is_ok(), "{key}");
    }
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM coupons")
        .fetch_one(&running.db)
        .await
        .expect("count");
    assert_eq!(kept, 1, "nothing of the dead letters was stored");
    assert_eq!(running.metrics.dead_lettered.load(Ordering::Relaxed), 3);
    running.stop().await;
}
