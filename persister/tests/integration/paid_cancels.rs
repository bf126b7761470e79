//! A paid order cancelled (issue 15: refunded at the provider, then ended `cancelled` in Redis):
//! stored once in the batch's transaction — `paid` → `cancelled` with `paid_at` kept, its units
//! back to `sold`, a history row, the points it earned taken back (never below zero) and the
//! cache settled — announced on the lifecycle topic, its Redis record forgotten; a replay or a
//! late payment changes nothing, and a cancellation delivered before its payment is stored
//! after it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flashgate_events::keys::{PointsKeys, SaleKeys};
use flashgate_events::{OrderAdmitted, OrderEnd, OrderEnded};
use fred::prelude::HashesInterface;

use crate::lifecycle::{
    admitted, ended, hash, history, lifecycle_topic, order_row, paid, record, send_end, transition,
    wait_status,
};
use crate::persisting::{Running, prepare, start, wait_for};
use crate::points::{balance_row, cache, fields, give, send_use};

/// `order` cancelled by its shopper after it was paid (the end the `refunded` op announces).
fn cancelled(order: &OrderAdmitted) -> OrderEnded {
    ended(order, OrderEnd::Cancelled, "cancelled_by_shopper")
}

/// The ledger rows of `order`'s points: (txid, delta, reason), in the order written.
async fn order_points(running: &Running, order: &OrderAdmitted) -> Vec<(String, i64, String)> {
    sqlx::query_as(
        "SELECT txid, delta, reason FROM point_ledger WHERE reference = ? ORDER BY entry_id",
    )
    .bind(&order.order_id)
    .fetch_all(&running.db)
    .await
    .expect("ledger")
}

fn row(txid: String, delta: i64, reason: &str) -> (String, i64, String) {
    (txid, delta, reason.to_owned())
}

/// Admitted → paid → cancelled, as `order_history` shows it.
fn paid_then_cancelled(
    order: &OrderAdmitted,
    pay: &OrderEnded,
    cancel: &OrderEnded,
) -> Vec<(String, String, String, Option<String>)> {
    vec![
        transition(
            format!("order.admitted:{}", order.order_id),
            "reserved",
            "confirmed",
            None,
        ),
        transition(
            pay.event_id(),
            "confirmed",
            "paid",
            Some("paid_outside_flashgate"),
        ),
        transition(
            cancel.event_id(),
            "paid",
            "cancelled",
            Some("cancelled_by_shopper"),
        ),
    ]
}

/// Waits until `order` has a take-back in the ledger (or 60 s pass).
async fn wait_unearned(running: &Running, order: &OrderAdmitted) {
    let sql = format!(
        "SELECT COUNT(*) FROM point_ledger WHERE txid = 'unearn-{}'",
        order.order_id
    );
    assert_eq!(running.wait_count(&sql, 1).await, 1, "never taken back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_orders_cancellation_delivered_twice_is_stored_once_with_its_units_and_points_back()
{
    let running = start().await;
    let redis = running.settings.redis.connect_pool().await.expect("Redis");
    let sale_id = running.sale(10).await;
    let order = admitted(sale_id, 1, 2); // 1,000: earns 10 points when paid
    let user = order.user_id.clone();
    let prefix = running.settings.redis.key_prefix.clone();
    let cache_key = PointsKeys::for_user(&prefix, &user).balance(&user);
    give(&running, &user, 100).await;
    let _: () = redis
        .next()
        .hset(
            &cache_key,
            fields(&[("balance", "100"), ("version", "1"), ("pending", "0")]),
        )
        .await
        .expect("HSET cache");
    running.send(&order).await;
    wait_status(&running, &order.order_id, "confirmed").await;
    let pay = paid(&order);
    send_end(&running, &pay).await;
    wait_status(&running, &order.order_id, "paid").await;
    assert_eq!(balance_row(&running, &user).await, (110, 2), "earned 10");
    assert_eq!(
        running.sold(sale_id).await,
        2,
        "a paid order keeps its units"
    );

    // Redis refunded it: its record reads `cancelled`, and the cancellation is on its way —
    // twice (a relay's re-send), then the payment again (a late re-send of it).
    let keys = SaleKeys::new(&prefix, sale_id);
    let _: () = redis
        .next()
        .hset(
            &keys.orders,
            HashMap::from([(
                order.order_id.clone(),
                record(&order, "cancelled", "cancelled_by_shopper"),
            )]),
        )
        .await
        .expect("HSET orders");
    tokio::time::sleep(Duration::from_millis(5)).await; // cancelled after paid, to the ms
    let cancel = cancelled(&order);
    send_end(&running, &cancel).await;
    send_end(&running, &cancel).await;
    send_end(&running, &pay).await;
    wait_status(&running, &order.order_id, "cancelled").await;
    let metrics = running.metrics.clone();
    assert_eq!(
        wait_for(&metrics.duplicates, 3).await,
        3,
        "the replayed cancellation found (and its take-back in the ledger), the late payment \
         stale, in one batch or several"
    );

    let (status, _, paid_at, cancelled_at, expired_at, reason) =
        order_row(&running, &order.order_id).await;
    assert_eq!(status, "cancelled");
    assert_eq!(
        paid_at,
        Some(pay.at.naive_utc()),
        "paid_at stays as history"
    );
    assert_eq!(cancelled_at, Some(cancel.at.naive_utc()));
    assert_eq!(expired_at, None);
    assert_eq!(reason.as_deref(), Some("cancelled_by_shopper"));
    assert_eq!(running.sold(sale_id).await, 0, "its units came back once");
    assert_eq!(
        history(&running, &order.order_id).await,
        paid_then_cancelled(&order, &pay, &cancel)
    );
    assert_eq!(
        order_points(&running, &order).await,
        [
            row(format!("earn-{}", order.order_id), 10, "earn"),
            row(format!("unearn-{}", order.order_id), -10, "unearn"),
        ],
        "earned once, taken back once"
    );
    assert_eq!(balance_row(&running, &user).await, (100, 3));
    assert_eq!(
        cache(&redis, &cache_key).await,
        fields(&[("balance", "100"), ("version", "3"), ("pending", "0")]),
        "the cache settled by version, as an earning settles it"
    );
    assert!(
        !hash(&redis, &keys.orders)
            .await
            .contains_key(&order.order_id),
        "the cancelled record is forgotten"
    );
    let announced = lifecycle_topic(&running, 3, Duration::from_secs(2)).await;
    let ids: Vec<&str> = announced
        .iter()
        .map(|(_, e, _)| e["event_id"].as_str().expect("event id"))
        .collect();
    let cancel_id = cancel.event_id();
    assert_eq!(
        ids,
        [pay.event_id().as_str(), &cancel_id, &cancel_id],
        "paid, cancelled, and the cancellation again on its replay (the late payment is not)"
    );
    assert!(announced.iter().all(|(key, _, _)| key == &order.order_id));
    running.stop().await;
    assert_eq!(metrics.orders_cancelled.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.orders_paid.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_spent_since_the_payment_are_taken_back_only_down_to_zero_and_once() {
    let running = start().await;
    let sale_id = running.sale(10).await;
    let order = admitted(sale_id, 1, 2); // earns 10 points when paid
    let user = order.user_id.clone();
    running.send(&order).await;
    wait_status(&running, &order.order_id, "confirmed").await;
    send_end(&running, &paid(&order)).await;
    wait_status(&running, &order.order_id, "paid").await;
    assert_eq!(balance_row(&running, &user).await, (10, 1));
    // 7 of the 10 spent on something else: 3 left.
    send_use(&running, &user, "use-spent", 7).await;
    let used = "SELECT COUNT(*) FROM point_ledger WHERE txid = 'use-spent'";
    assert_eq!(running.wait_count(used, 1).await, 1);

    let cancel = cancelled(&order);
    send_end(&running, &cancel).await;
    send_end(&running, &cancel).await;
    wait_unearned(&running, &order).await;
    assert_eq!(
        wait_for(&running.metrics.duplicates, 2).await,
        2,
        "the replay found, and its take-back in the ledger"
    );

    assert_eq!(
        order_points(&running, &order).await,
        [
            row(format!("earn-{}", order.order_id), 10, "earn"),
            row(format!("unearn-{}", order.order_id), -3, "unearn_partial"),
        ],
        "what the balance held, once, and the row says it was less than earned"
    );
    assert_eq!(
        balance_row(&running, &user).await,
        (0, 3),
        "never below zero"
    );
    assert_eq!(order_row(&running, &order.order_id).await.0, "cancelled");
    assert_eq!(running.sold(sale_id).await, 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_delivered_before_its_payment_is_stored_after_it() {
    // In one batch, behind its admission: the payment is decided first, as Redis made it.
    let mut batched = prepare().await;
    let sale_id = batched.sale(10).await;
    let order = admitted(sale_id, 1, 1); // 500: earns 5
    let pay = paid(&order);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cancel = cancelled(&order);
    batched.send(&order).await;
    send_end(&batched, &cancel).await;
    send_end(&batched, &pay).await;
    batched.resume().await;
    wait_status(&batched, &order.order_id, "cancelled").await;
    assert_eq!(
        history(&batched, &order.order_id).await,
        paid_then_cancelled(&order, &pay, &cancel)
    );
    assert_eq!(
        order_points(&batched, &order).await,
        [
            row(format!("earn-{}", order.order_id), 5, "earn"),
            row(format!("unearn-{}", order.order_id), -5, "unearn"),
        ]
    );
    assert_eq!(batched.sold(sale_id).await, 0);
    assert_eq!(batched.metrics.order_ends_parked.load(Ordering::Relaxed), 0);
    batched.stop().await;

    // Both before the admission, in batches of their own: both wait for it, and it applies
    // them payment first.
    let running = start().await;
    let sale_id = running.sale(10).await;
    let order = admitted(sale_id, 2, 1);
    let pay = paid(&order);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cancel = cancelled(&order);
    send_end(&running, &cancel).await;
    assert_eq!(wait_for(&running.metrics.order_ends_parked, 1).await, 1);
    send_end(&running, &pay).await;
    assert_eq!(wait_for(&running.metrics.order_ends_parked, 2).await, 2);
    running.send(&order).await;
    wait_status(&running, &order.order_id, "cancelled").await;
    assert_eq!(
        history(&running, &order.order_id).await,
        paid_then_cancelled(&order, &pay, &cancel)
    );
    assert_eq!(
        order_points(&running, &order).await,
        [
            row(format!("earn-{}", order.order_id), 5, "earn"),
            row(format!("unearn-{}", order.order_id), -5, "unearn"),
        ]
    );
    assert_eq!(running.sold(sale_id).await, 0);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM parked_events")
        .fetch_one(&running.db)
        .await
        .expect("parked");
    assert_eq!(left, 0, "both released by the admission's transaction");
    running.stop().await;
}
