//! The order lifecycle in the persister (issue 14): ends (cancelled, expired, paid) decided in
//! Redis reach the orders topic and are stored on confirmed orders only, with their time,
//! reason and history row; a give-back lowers `sold`, a payment earns points; an end before its
//! admission waits for it; replays change nothing and are announced again on the lifecycle
//! topic; once stored, the order's record in Redis is forgotten (never an open one).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use flashgate_events::keys::{PointsKeys, SaleKeys};
use flashgate_events::{OrderAdmitted, OrderEnd, OrderEnded, TRACE_HEADER};
use flashgate_persister::orders::OrderRecords;
use flashgate_testkit::{drop_database, fresh_topic};
use fred::prelude::{HashesInterface, Pool};

use crate::helpers::test_database;
use crate::persisting::{Running, order, prepare, start, wait_for};
use crate::points::{cache, fields, give};

/// Now, to the millisecond (what MySQL's DATETIME(3) keeps).
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now")
}

/// An order of `quantity` units with a payment window of ten minutes.
pub fn admitted(sale_id: u64, n: u32, quantity: u32) -> OrderAdmitted {
    let mut order = order(sale_id, n, quantity);
    order.admitted_at = now_ms();
    order.pay_by = Some(order.admitted_at + chrono::Duration::minutes(10));
    order
}

/// How `order` ended, as Redis would announce it.
pub fn ended(order: &OrderAdmitted, end: OrderEnd, reason: &str) -> OrderEnded {
    OrderEnded {
        order_id: order.order_id.clone(),
        sale_id: order.sale_id,
        user_id: order.user_id.clone(),
        quantity: order.quantity,
        end,
        reason: Some(reason.to_owned()),
        at: now_ms(),
    }
}

/// `order` paid outside flashgate.
pub fn paid(order: &OrderAdmitted) -> OrderEnded {
    ended(order, OrderEnd::Paid, "paid_outside_flashgate")
}

/// Produces `end` to the orders topic, keyed by its order (the partition of its admission).
pub async fn send_end(running: &Running, end: &OrderEnded) {
    let envelope = end.clone().into_envelope("trace-end".to_owned());
    let topic = running.settings.kafka.orders_topic.clone();
    running
        .send_to(
            &topic,
            &end.order_id,
            &serde_json::to_vec(&envelope).expect("json"),
        )
        .await;
}

/// What MySQL holds of an order: status, pay_by, paid_at, cancelled_at, expired_at, reason.
pub type OrderRow = (
    String,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<String>,
);

pub async fn order_row(running: &Running, order_id: &str) -> OrderRow {
    sqlx::query_as(
        "SELECT status, pay_by, paid_at, cancelled_at, expired_at, close_reason FROM orders \
         WHERE order_id = ?",
    )
    .bind(order_id)
    .fetch_one(&running.db)
    .await
    .expect("order row")
}

/// The history of an order: (event id, from, to, reason), oldest first.
pub async fn history(
    running: &Running,
    order_id: &str,
) -> Vec<(String, String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT event_id, from_status, to_status, reason FROM order_history WHERE order_id = ? \
         ORDER BY occurred_at, to_status = 'confirmed' DESC",
    )
    .bind(order_id)
    .fetch_all(&running.db)
    .await
    .expect("history")
}

pub fn transition(
    event_id: String,
    from: &str,
    to: &str,
    reason: Option<&str>,
) -> (String, String, String, Option<String>) {
    (
        event_id,
        from.to_owned(),
        to.to_owned(),
        reason.map(str::to_owned),
    )
}

pub async fn wait_status(running: &Running, order_id: &str, status: &str) {
    let sql = format!(
        "SELECT COUNT(*) FROM orders WHERE order_id = '{order_id}' AND status = '{status}'"
    );
    assert_eq!(
        running.wait_count(&sql, 1).await,
        1,
        "{order_id} never {status}"
    );
}

/// The orders' events on the lifecycle topic, read from the start: (key, envelope, headers)
/// of each message, once `expected` arrived (or 60 s passed) and `settle` more went by. A
/// sale's own events (`sale.sold_out`: sold_out.rs) are left out.
pub async fn lifecycle_topic(
    running: &Running,
    expected: usize,
    settle: Duration,
) -> Vec<(String, serde_json::Value, HashMap<String, String>)> {
    let settings = running.settings.clone();
    let topic = settings.kafka.order_events_topic.clone();
    tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(&settings, &topic, expected, Duration::from_secs(60), settle)
    })
    .await
    .expect("reader")
    .into_iter()
    .map(|m| {
        let event: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
        (m.key, event, m.headers)
    })
    .filter(|(_, event, _)| !event["type"].as_str().unwrap_or("").starts_with("sale."))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_end_is_stored_with_its_time_reason_and_history_and_only_a_give_back_lowers_sold() {
    let running = start().await;
    let sale_id = running.sale(10).await;
    let orders: Vec<OrderAdmitted> = (1..=3).map(|n| admitted(sale_id, n, 2)).collect();
    for order in &orders {
        running.send(order).await;
    }
    let confirmed = "SELECT COUNT(*) FROM orders WHERE status = 'confirmed'";
    assert_eq!(running.wait_count(confirmed, 3).await, 3);
    assert_eq!(running.sold(sale_id).await, 6);

    let ends = [
        ended(&orders[0], OrderEnd::Cancelled, "cancelled_by_shopper"),
        ended(&orders[1], OrderEnd::Expired, "not_paid_in_time"),
        paid(&orders[2]),
    ];
    for end in &ends {
        send_end(&running, end).await;
    }
    let final_ = "SELECT COUNT(*) FROM orders WHERE status IN ('cancelled', 'expired', 'paid')";
    assert_eq!(running.wait_count(final_, 3).await, 3);

    let at = |end: &OrderEnded| Some(end.at.naive_utc());
    for (order, end) in orders.iter().zip(&ends) {
        let (status, pay_by, paid_at, cancelled_at, expired_at, reason) =
            order_row(&running, &order.order_id).await;
        assert_eq!(status, end.end.status());
        assert_eq!(
            pay_by,
            order.pay_by.map(|t| t.naive_utc()),
            "pay_by as admitted"
        );
        let only = |kind: OrderEnd| if end.end == kind { at(end) } else { None };
        assert_eq!(
            (paid_at, cancelled_at, expired_at),
            (
                only(OrderEnd::Paid),
                only(OrderEnd::Cancelled),
                only(OrderEnd::Expired)
            ),
            "{status}: only its own time"
        );
        assert_eq!(reason, end.reason);
        assert_eq!(
            history(&running, &order.order_id).await,
            [
                transition(
                    format!("order.admitted:{}", order.order_id),
                    "reserved",
                    "confirmed",
                    None
                ),
                transition(
                    end.event_id(),
                    "confirmed",
                    end.end.status(),
                    end.reason.as_deref()
                ),
            ]
        );
    }
    assert_eq!(
        running.sold(sale_id).await,
        2,
        "the cancelled and expired orders gave their units back; the paid one keeps them"
    );
    let metrics = &running.metrics;
    assert_eq!(wait_for(&metrics.orders_paid, 1).await, 1);
    assert_eq!(wait_for(&metrics.orders_cancelled, 1).await, 1);
    assert_eq!(wait_for(&metrics.orders_expired, 1).await, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_are_earned_when_an_order_is_paid_and_never_when_it_is_confirmed_or_given_back() {
    let running = start().await;
    let redis = running.settings.redis.connect_pool().await.expect("Redis");
    let sale_id = running.sale(10).await;
    // Each buyer has 100 points in MySQL and a cache in step with it (version 1).
    let orders: Vec<OrderAdmitted> = (1..=3).map(|n| admitted(sale_id, n, 1)).collect();
    let prefix = running.settings.redis.key_prefix.clone();
    let cache_key = |user: &str| PointsKeys::for_user(&prefix, user).balance(user);
    for order in &orders {
        give(&running, &order.user_id, 100).await;
        let _: () = redis
            .next()
            .hset(
                cache_key(&order.user_id),
                fields(&[("balance", "100"), ("version", "1"), ("pending", "0")]),
            )
            .await
            .expect("HSET");
        running.send(order).await;
    }
    let confirmed = "SELECT COUNT(*) FROM orders WHERE status = 'confirmed'";
    assert_eq!(running.wait_count(confirmed, 3).await, 3);
    let earned = "SELECT COUNT(*) FROM point_ledger WHERE reason = 'earn'";
    assert_eq!(
        running.wait_count(earned, 0).await,
        0,
        "confirmed orders earn nothing"
    );

    send_end(&running, &paid(&orders[0])).await;
    send_end(
        &running,
        &ended(&orders[1], OrderEnd::Cancelled, "cancelled_by_shopper"),
    )
    .await;
    send_end(
        &running,
        &ended(&orders[2], OrderEnd::Expired, "not_paid_in_time"),
    )
    .await;
    let final_ = "SELECT COUNT(*) FROM orders WHERE status IN ('cancelled', 'expired', 'paid')";
    assert_eq!(running.wait_count(final_, 3).await, 3);

    // 1 % of 500: 5 points, for the paid order alone.
    let ledger: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT txid, user_id, delta FROM point_ledger WHERE reason = 'earn' ORDER BY txid",
    )
    .fetch_all(&running.db)
    .await
    .expect("ledger");
    let payer = &orders[0];
    assert_eq!(
        ledger,
        [(format!("earn-{}", payer.order_id), payer.user_id.clone(), 5)]
    );
    assert_eq!(
        crate::points::balance_row(&running, &payer.user_id).await,
        (105, 2)
    );
    // The payer's cache is settled with the earning after the commit.
    assert_eq!(
        cache(&redis, &cache_key(&payer.user_id)).await,
        fields(&[("balance", "105"), ("version", "2"), ("pending", "0")])
    );
    for other in &orders[1..] {
        assert_eq!(
            crate::points::balance_row(&running, &other.user_id).await,
            (100, 1)
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_delivered_before_its_admission_is_parked_then_applied_with_it() {
    // Across two batches: the end waits in parked_events until the admission is stored.
    let running = start().await;
    let sale_id = running.sale(10).await;
    let early = admitted(sale_id, 1, 3);
    let cancel = ended(&early, OrderEnd::Cancelled, "cancelled_by_shopper");
    send_end(&running, &cancel).await;
    assert_eq!(wait_for(&running.metrics.order_ends_parked, 1).await, 1);
    let parked: Vec<(String, String, String)> =
        sqlx::query_as("SELECT waits_kind, waits_for, event_key FROM parked_events")
            .fetch_all(&running.db)
            .await
            .expect("parked");
    assert_eq!(
        parked,
        [(
            "order".to_owned(),
            early.order_id.clone(),
            "order.cancelled".to_owned()
        )]
    );

    running.send(&early).await;
    wait_status(&running, &early.order_id, "cancelled").await;
    assert_eq!(running.sold(sale_id).await, 0, "admitted then given back");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM parked_events")
        .fetch_one(&running.db)
        .await
        .expect("parked");
    assert_eq!(left, 0, "released by the admission's transaction");
    assert_eq!(wait_for(&running.metrics.order_ends_unparked, 1).await, 1);
    assert_eq!(history(&running, &early.order_id).await.len(), 2);
    let announced = lifecycle_topic(&running, 1, Duration::ZERO).await;
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].1["event_id"], cancel.event_id());
    running.stop().await;

    // In one batch, the end first: applied after the admission, nothing parked.
    let mut batched = prepare().await;
    let sale_id = batched.sale(10).await;
    let together = admitted(sale_id, 2, 1);
    send_end(&batched, &paid(&together)).await;
    batched.send(&together).await;
    batched.resume().await;
    wait_status(&batched, &together.order_id, "paid").await;
    assert_eq!(batched.sold(sale_id).await, 1);
    assert_eq!(batched.metrics.order_ends_parked.load(Ordering::Relaxed), 0);
    batched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_end_changes_nothing_and_is_announced_again_under_the_same_event_id() {
    let running = start().await;
    let sale_id = running.sale(10).await;
    let order = admitted(sale_id, 1, 2);
    running.send(&order).await;
    wait_status(&running, &order.order_id, "confirmed").await;
    let cancel = ended(&order, OrderEnd::Cancelled, "cancelled_by_shopper");
    send_end(&running, &cancel).await;
    wait_status(&running, &order.order_id, "cancelled").await;
    let first = order_row(&running, &order.order_id).await;

    // The end comes again (a relay's re-send, or the batch replayed after a crash).
    send_end(&running, &cancel).await;
    let announced = lifecycle_topic(&running, 2, Duration::from_secs(2)).await;

    assert_eq!(
        announced.len(),
        2,
        "announced when stored and again on the replay"
    );
    for (key, event, headers) in &announced {
        assert_eq!(key, &order.order_id);
        assert_eq!(event["event_id"], cancel.event_id());
        assert_eq!(event["type"], "order.cancelled");
        assert_eq!(event["data"]["reason"], "cancelled_by_shopper");
        assert_eq!(
            headers.get(TRACE_HEADER).map(String::as_str),
            Some("trace-end")
        );
    }
    assert_eq!(
        order_row(&running, &order.order_id).await,
        first,
        "nothing changed"
    );
    assert_eq!(running.sold(sale_id).await, 0, "the units came back once");
    assert_eq!(history(&running, &order.order_id).await.len(), 2);
    // Stopping finishes the batch in hand: every count is in.
    let metrics = running.metrics.clone();
    running.stop().await;
    assert_eq!(
        metrics.orders_cancelled.load(Ordering::Relaxed),
        1,
        "stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_of_a_final_order_changes_nothing_and_one_of_an_unknown_sale_is_dead_lettered() {
    let running = start().await;
    let sale_id = running.sale(1).await;
    let kept = admitted(sale_id, 1, 1);
    running.send(&kept).await;
    wait_status(&running, &kept.order_id, "confirmed").await;
    let refused = admitted(sale_id, 2, 1); // no unit left in MySQL: rejected
    running.send(&refused).await;
    wait_status(&running, &refused.order_id, "rejected").await;
    send_end(&running, &paid(&kept)).await;
    wait_status(&running, &kept.order_id, "paid").await;

    // An expiry of the paid order (a cancellation of it is stored: paid_cancels.rs), a cancel
    // and a payment of the rejected one; and an end of an order of a sale MySQL does not hold.
    send_end(
        &running,
        &ended(&kept, OrderEnd::Expired, "not_paid_in_time"),
    )
    .await;
    send_end(
        &running,
        &ended(&refused, OrderEnd::Cancelled, "cancelled_by_shopper"),
    )
    .await;
    send_end(&running, &paid(&refused)).await;
    let nowhere = admitted(sale_id + 999, 3, 1);
    send_end(
        &running,
        &ended(&nowhere, OrderEnd::Expired, "not_paid_in_time"),
    )
    .await;
    assert_eq!(
        wait_for(&running.metrics.duplicates, 3).await,
        3,
        "three stale ends"
    );
    assert_eq!(wait_for(&running.metrics.dead_lettered, 1).await, 1);

    assert_eq!(order_row(&running, &kept.order_id).await.0, "paid");
    assert_eq!(order_row(&running, &refused.order_id).await.0, "rejected");
    assert_eq!(
        running.sold(sale_id).await,
        1,
        "no unit given back by a stale end"
    );
    assert_eq!(
        history(&running, &kept.order_id).await.len(),
        2,
        "admitted, paid"
    );
    assert_eq!(
        history(&running, &refused.order_id).await.len(),
        1,
        "rejected"
    );
    let earned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM point_ledger")
        .fetch_one(&running.db)
        .await
        .expect("ledger");
    assert_eq!(earned, 1, "the paid order alone earned");
    let announced = lifecycle_topic(&running, 1, Duration::from_secs(2)).await;
    let ids: Vec<&str> = announced
        .iter()
        .map(|(_, e, _)| e["event_id"].as_str().expect("event id"))
        .collect();
    assert_eq!(
        ids,
        [paid(&kept).event_id()],
        "stale ends are not announced"
    );
    let settings = running.settings.clone();
    running.stop().await;
    let topic = settings.kafka.dead_letter_topic.clone();
    let dead =
        tokio::task::spawn_blocking(move || crate::persisting::read_topic(&settings, &topic, 1))
            .await
            .expect("reader");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, nowhere.order_id);
    assert!(
        dead[0].1["reason"].contains("sale exists"),
        "{:?}",
        dead[0].1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_given_back_is_sold_again_in_the_same_batch() {
    // One unit: a stored order holds it; its cancel and the next buyer's order (who took the
    // unit in Redis after the cancel) arrive in one batch. The cancel is applied first, as in
    // Redis, so the new order is not refused for a unit that came back.
    let mut running = prepare().await;
    running.settings.kafka.orders_topic =
        fresh_topic(&running.settings, "flashgate.test-orders-one-", 1).await;
    let sale_id = running.sale(1).await;
    let held = admitted(sale_id, 1, 1);
    sqlx::query(
        "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, status, \
         admitted_at) VALUES (?, ?, ?, 1, 500, 500, 'confirmed', ?)",
    )
    .bind(&held.order_id)
    .bind(sale_id)
    .bind(&held.user_id)
    .bind(held.admitted_at.naive_utc())
    .execute(&running.db)
    .await
    .expect("a stored order");
    sqlx::query("UPDATE sales SET sold = 1 WHERE sale_id = ?")
        .bind(sale_id)
        .execute(&running.db)
        .await
        .expect("sold");
    let next = admitted(sale_id, 2, 1);
    send_end(
        &running,
        &ended(&held, OrderEnd::Cancelled, "cancelled_by_shopper"),
    )
    .await;
    running.send(&next).await;

    running.resume().await;
    wait_status(&running, &held.order_id, "cancelled").await;
    let stored = format!(
        "SELECT COUNT(*) FROM orders WHERE order_id = '{}'",
        next.order_id
    );
    assert_eq!(running.wait_count(&stored, 1).await, 1);
    assert_eq!(order_row(&running, &next.order_id).await.0, "confirmed");
    assert_eq!(running.sold(sale_id).await, 1);
    assert_eq!(running.metrics.rejected.load(Ordering::Relaxed), 0);
    running.stop().await;
}

/// `order`'s record in a sale's `orders` hash, in `state`.
pub fn record(order: &OrderAdmitted, state: &str, reason: &str) -> String {
    let admitted = order.admitted_at.timestamp_millis();
    let pay_by = order.pay_by.expect("pay_by").timestamp_millis();
    let at = if state == "held" {
        String::new()
    } else {
        admitted.to_string()
    };
    format!(
        "{}\n{}\n{admitted}\n{pay_by}\n{state}\n{at}\n{reason}",
        order.user_id, order.quantity
    )
}

pub async fn hash(redis: &Pool, key: &str) -> HashMap<String, String> {
    redis.next().hgetall(key).await.expect("HGETALL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_ends_are_forgotten_in_redis_and_open_and_paid_records_are_kept() {
    let running = start().await;
    let redis = running.settings.redis.connect_pool().await.expect("Redis");
    let sale_id = running.sale(10).await;
    let keys = SaleKeys::new(&running.settings.redis.key_prefix, sale_id);
    let [payer, canceller, still_held, open] = [1, 2, 3, 4].map(|n| admitted(sale_id, n, 1));
    // The records as Redis holds them once each order ended there, and the discounts on them;
    // except two that still read as open, whatever MySQL says (one in the old two-field form):
    // the persister is asked to forget them, and must not. A paid record stays too (until the
    // sale's cleanup), with its discounts: it may still be cancelled and refunded.
    let _: () = redis
        .next()
        .hset(
            &keys.orders,
            [
                (
                    payer.order_id.clone(),
                    record(&payer, "paid", "paid_outside_flashgate"),
                ),
                (
                    canceller.order_id.clone(),
                    record(&canceller, "cancelled", "cancelled_by_shopper"),
                ),
                (still_held.order_id.clone(), record(&still_held, "held", "")),
                (open.order_id.clone(), format!("{}\n1", open.user_id)),
            ]
            .into_iter()
            .collect::<HashMap<_, _>>(),
        )
        .await
        .expect("HSET orders");
    let p = &payer.order_id;
    let c = &canceller.order_id;
    let discounts = fields(&[
        (p.as_str(), "50"),
        (&format!("{p}\nrefs"), "cpn:9-k\npts:use-7"),
        (&format!("{p}\ncpn:9-k"), "30\nh1"),
        (&format!("{p}\npts:use-7"), "20\nh2"),
        (c.as_str(), "10"),
        (&format!("{c}\nrefs"), "cpn:9-m"),
        (&format!("{c}\ncpn:9-m"), "10\nh3"),
    ]);
    let _: () = redis
        .next()
        .hset(&keys.discounts, discounts.clone())
        .await
        .expect("HSET discounts");

    for order in [&payer, &canceller, &still_held, &open] {
        running.send(order).await;
    }
    let confirmed = "SELECT COUNT(*) FROM orders WHERE status = 'confirmed'";
    assert_eq!(running.wait_count(confirmed, 4).await, 4);
    send_end(&running, &paid(&payer)).await;
    send_end(
        &running,
        &ended(&canceller, OrderEnd::Cancelled, "cancelled_by_shopper"),
    )
    .await;
    send_end(
        &running,
        &ended(&still_held, OrderEnd::Expired, "not_paid_in_time"),
    )
    .await;
    send_end(
        &running,
        &ended(&open, OrderEnd::Cancelled, "cancelled_by_shopper"),
    )
    .await;
    // Counted once each end's batch has been through the forget step.
    let metrics = &running.metrics;
    assert_eq!(wait_for(&metrics.orders_cancelled, 2).await, 2);
    assert_eq!(wait_for(&metrics.orders_expired, 1).await, 1);
    assert_eq!(wait_for(&metrics.orders_paid, 1).await, 1);
    assert_eq!(wait_for(&metrics.orders_forgotten, 1).await, 1);

    let orders = hash(&redis, &keys.orders).await;
    let mut left: Vec<&str> = orders.keys().map(String::as_str).collect();
    left.sort_unstable();
    let mut expected = [
        payer.order_id.as_str(),
        still_held.order_id.as_str(),
        open.order_id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(
        left, expected,
        "the cancelled record forgotten, open and paid ones kept"
    );
    assert_eq!(
        hash(&redis, &keys.discounts).await,
        discounts,
        "the paid order's discounts stay with it; the cancelled one's are left to its \
         compensation"
    );

    // Forgetting again (a replayed batch) finds nothing left to forget.
    let records = OrderRecords::new(redis.clone(), &running.settings.redis.key_prefix);
    let again = records
        .forget([
            (sale_id, payer.order_id.as_str()),
            (sale_id, still_held.order_id.as_str()),
        ])
        .await
        .expect("forget");
    assert_eq!(again, 0);
    assert_eq!(hash(&redis, &keys.orders).await.len(), 3);
    let metrics = running.metrics.clone();
    running.stop().await;
    assert_eq!(metrics.orders_forgotten.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_lifecycle_migration_records_the_first_transition_of_orders_stored_before_it() {
    let (_, pool) = test_database().await;
    flashgate_persister::db::MIGRATOR
        .run_to(4, &pool)
        .await
        .expect("0001..0004");
    sqlx::query(
        "INSERT INTO sales (sku, title, price, total, sold, per_user_limit, starts_at, ends_at) \
         VALUES ('SKU-1', 'Test', 100, 5, 1, 1, NOW(3), NOW(3) + INTERVAL 1 HOUR)",
    )
    .execute(&pool)
    .await
    .expect("sale");
    sqlx::query(
        "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, status, \
         reject_reason, admitted_at) VALUES \
         ('1-a', 1, 'ann', 1, 100, 100, 'confirmed', NULL, NOW(3)), \
         ('1-b', 1, 'bob', 1, 100, 100, 'rejected', 'sold_out', NOW(3))",
    )
    .execute(&pool)
    .await
    .expect("orders");

    flashgate_persister::db::migrate(&pool)
        .await
        .expect("0005 on existing data");

    let rows: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT event_id, order_id, from_status, to_status, reason FROM order_history \
         ORDER BY order_id",
    )
    .fetch_all(&pool)
    .await
    .expect("history");
    let row = |id: &str, to: &str, reason: Option<&str>| {
        (
            format!("order.admitted:{id}"),
            id.to_owned(),
            "reserved".to_owned(),
            to.to_owned(),
            reason.map(str::to_owned),
        )
    };
    assert_eq!(
        rows,
        [
            row("1-a", "confirmed", None),
            row("1-b", "rejected", Some("sold_out"))
        ]
    );
    let window: u32 = sqlx::query_scalar("SELECT payment_window_seconds FROM sales")
        .fetch_one(&pool)
        .await
        .expect("window");
    assert_eq!(window, 600, "existing sales get the default window");
    for outside in [29, 86_401] {
        sqlx::query("UPDATE sales SET payment_window_seconds = ?")
            .bind(outside)
            .execute(&pool)
            .await
            .expect_err("the window is held to 30..86400");
    }
    drop_database(pool).await;
}
