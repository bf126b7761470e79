//! A sale's admissions and ends out of the order Redis decided them (a relay that died holding
//! some re-sends them after `gateway.relay_claim_idle_ms`, behind later ones): an admission
//! MySQL's guards refuse waits for the units to come back (`parked_events`, kind `stock`)
//! instead of being rejected at once. Redis's decision stands when the end that freed its unit
//! arrives; a real oversell (no unit ever comes back) is rejected after
//! `persister.refused_admission_wait_ms` and announced once; a replay of a waiting admission
//! changes nothing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use flashgate_events::{OrderAdmitted, OrderEnd, OrderEnded, TRACE_HEADER};

use crate::lifecycle::ended;
use crate::persisting::{Running, order, prepare, wait_for};

/// Now, to the millisecond (what MySQL's DATETIME(3) keeps).
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now")
}

/// A 1-unit order of `user` admitted now, with its payment window.
fn admitted(sale_id: u64, user: &str) -> OrderAdmitted {
    let mut order = order(sale_id, 0, 1);
    order.user_id = user.to_owned();
    order.admitted_at = now_ms();
    order.pay_by = Some(order.admitted_at + chrono::Duration::minutes(10));
    order
}

/// `order` cancelled by its shopper.
fn cancelled(order: &OrderAdmitted) -> OrderEnded {
    ended(order, OrderEnd::Cancelled, "cancelled_by_shopper")
}

/// A persister whose refused admissions wait `wait_ms`, not yet consuming.
async fn waiting_persister(wait_ms: u64) -> Running {
    let mut running = prepare().await;
    running.settings.persister.refused_admission_wait_ms = wait_ms;
    running
}

/// A sale of `total` units, `per_user_limit` per shopper.
async fn sale(running: &Running, total: u32, per_user_limit: u32) -> u64 {
    sqlx::query(
        "INSERT INTO sales (sku, title, price, total, per_user_limit, starts_at, ends_at) \
         VALUES ('SKU', 'T', 500, ?, ?, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) + INTERVAL 1 HOUR)",
    )
    .bind(total)
    .bind(per_user_limit)
    .execute(&running.db)
    .await
    .expect("sale")
    .last_insert_id()
}

/// Produces `order`'s admission keyed by its sale, as the relay does: a sale's events on one
/// partition, in the order sent.
async fn send_admission(running: &Running, order: &OrderAdmitted) {
    let envelope = order
        .clone()
        .into_envelope(format!("trace-{}", order.order_id));
    send(
        running,
        order.sale_id,
        &serde_json::to_vec(&envelope).expect("json"),
    )
    .await;
}

/// Produces `end` keyed by its sale.
async fn send_end(running: &Running, end: &OrderEnded) {
    let envelope = end.clone().into_envelope("trace-end".to_owned());
    send(
        running,
        end.sale_id,
        &serde_json::to_vec(&envelope).expect("json"),
    )
    .await;
}

async fn send(running: &Running, sale_id: u64, payload: &[u8]) {
    let topic = running.settings.kafka.orders_topic.clone();
    running.send_to(&topic, &sale_id.to_string(), payload).await;
}

/// `order`'s status in MySQL, if stored.
async fn status(running: &Running, order: &OrderAdmitted) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM orders WHERE order_id = ?")
        .bind(&order.order_id)
        .fetch_optional(&running.db)
        .await
        .expect("status")
}

/// Waits (a minute at most) until `order` is stored with `expected`.
async fn wait_status(running: &Running, order: &OrderAdmitted, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = status(running, order).await;
        if now.as_deref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} is {now:?}, never {expected}",
            order.order_id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The parked events of `kind` keyed by `order`'s id, with when they were parked.
async fn parked(running: &Running, kind: &str, order: &OrderAdmitted) -> Vec<NaiveDateTime> {
    sqlx::query_scalar("SELECT parked_at FROM parked_events WHERE waits_kind = ? AND event_key = ?")
        .bind(kind)
        .bind(&order.order_id)
        .fetch_all(&running.db)
        .await
        .expect("parked")
}

/// Waits until `order`'s admission waits in `parked_events`; returns when it was parked.
async fn wait_parked(running: &Running, order: &OrderAdmitted) -> NaiveDateTime {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let [at] = parked(running, "stock", order).await[..] {
            return at;
        }
        assert!(Instant::now() < deadline, "{} never parked", order.order_id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn parked_left(running: &Running) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM parked_events")
        .fetch_one(&running.db)
        .await
        .expect("parked events")
}

/// The `order.rejected` events on the compensations topic, as (order id, event id, trace id):
/// `expected` of them and a marker produced after them (anything announced before now comes
/// before it), and whatever else arrives within a second.
async fn refusals_announced(running: &Running, expected: usize) -> Vec<(String, String, String)> {
    let topic = running.settings.kafka.compensations_topic.clone();
    running
        .send_to(&topic, "marker", b"{\"type\":\"marker\"}")
        .await;
    let settings = running.settings.clone();
    let messages = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &topic,
            expected + 1,
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
    });
    let messages = messages.await.expect("reader");
    let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys.last(), Some(&"marker"), "the marker arrived last");
    messages[..messages.len() - 1]
        .iter()
        .map(|m| {
            let event: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            assert_eq!(event["type"], "order.rejected");
            let field = |name: &str| event["data"][name].as_str().unwrap_or_default().to_owned();
            let trace = m.headers.get(TRACE_HEADER).cloned().unwrap_or_default();
            (
                field("order_id"),
                event["event_id"].as_str().unwrap_or_default().to_owned(),
                trace,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_that_arrives_before_the_cancel_that_freed_its_unit_waits_and_is_confirmed() {
    let mut running = waiting_persister(60_000).await;
    running.resume().await;
    let sale_id = sale(&running, 1, 5).await;
    // Redis: ann bought the last unit, cancelled, and bob bought it. The relay that held ann's
    // cancel died: bob's admission reaches MySQL first, while ann still holds the unit there.
    let (ann, bob) = (admitted(sale_id, "ann"), admitted(sale_id, "bob"));
    send_admission(&running, &ann).await;
    wait_status(&running, &ann, "confirmed").await;
    send_admission(&running, &bob).await;
    wait_parked(&running, &bob).await;
    assert_eq!(status(&running, &bob).await, None, "waiting, not stored");
    assert_eq!(running.sold(sale_id).await, 1);

    send_end(&running, &cancelled(&ann)).await;
    wait_status(&running, &bob, "confirmed").await;

    assert_eq!(status(&running, &ann).await.as_deref(), Some("cancelled"));
    assert_eq!(running.sold(sale_id).await, 1, "ann's unit, now bob's");
    assert_eq!(parked_left(&running).await, 0);
    assert_eq!(refusals_announced(&running, 0).await, [], "nobody told no");
    let metrics = running.metrics.clone();
    running.stop().await;
    assert_eq!(metrics.admissions_parked.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.admissions_unparked.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.rejected.load(Ordering::Relaxed), 0);
    assert_eq!(metrics.persisted.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_who_cancelled_and_bought_again_is_not_refused_the_limit_when_the_cancel_comes_late()
 {
    let mut running = waiting_persister(60_000).await;
    running.resume().await;
    let sale_id = sale(&running, 10, 1).await;
    // One unit per shopper: uma's first order, its cancel, her second order; the cancel late.
    let (first, second) = (admitted(sale_id, "uma"), admitted(sale_id, "uma"));
    send_admission(&running, &first).await;
    wait_status(&running, &first, "confirmed").await;
    send_admission(&running, &second).await;
    wait_parked(&running, &second).await;
    assert_eq!(status(&running, &second).await, None);

    send_end(&running, &cancelled(&first)).await;
    wait_status(&running, &second, "confirmed").await;

    assert_eq!(status(&running, &first).await.as_deref(), Some("cancelled"));
    assert_eq!(running.sold(sale_id).await, 1);
    assert_eq!(parked_left(&running).await, 0);
    assert_eq!(refusals_announced(&running, 0).await, []);
    let metrics = running.metrics.clone();
    running.stop().await;
    assert_eq!(metrics.rejected.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_admissions_own_cancel_waits_for_it_and_the_unit_goes_on_to_the_next_buyer() {
    // Redis, on one unit: ann holds it; ann cancels; bob buys and cancels; cy buys. Everything
    // but ann's cancel arrives first. Delivered message by message, then all in one batch.
    for one_batch in [false, true] {
        let mut running = waiting_persister(60_000).await;
        if !one_batch {
            running.resume().await;
        }
        let sale_id = sale(&running, 1, 5).await;
        let [ann, bob, cy] = ["ann", "bob", "cy"].map(|user| admitted(sale_id, user));
        send_admission(&running, &ann).await;
        if !one_batch {
            wait_status(&running, &ann, "confirmed").await;
        }
        send_admission(&running, &bob).await;
        send_end(&running, &cancelled(&bob)).await;
        send_admission(&running, &cy).await;
        if !one_batch {
            wait_parked(&running, &cy).await;
            assert_eq!(wait_for(&running.metrics.order_ends_parked, 1).await, 1);
            assert_eq!(parked(&running, "stock", &bob).await.len(), 1);
        }
        send_end(&running, &cancelled(&ann)).await;
        if one_batch {
            running.resume().await;
        }
        wait_status(&running, &cy, "confirmed").await;

        assert_eq!(status(&running, &ann).await.as_deref(), Some("cancelled"));
        assert_eq!(
            status(&running, &bob).await.as_deref(),
            Some("cancelled"),
            "stored, then ended, in one transaction"
        );
        assert_eq!(running.sold(sale_id).await, 1, "one_batch: {one_batch}");
        assert_eq!(parked_left(&running).await, 0);
        assert_eq!(refusals_announced(&running, 0).await, []);
        running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_oversell_is_rejected_once_its_wait_is_over_and_announced_once() {
    let wait = Duration::from_millis(1_500);
    let mut running = waiting_persister(wait.as_millis() as u64).await;
    running.resume().await;
    let sale_id = sale(&running, 1, 5).await;
    // Redis lost ann's purchase in a failover and sold the unit to bob again: no unit will
    // ever come back for bob, and no further message of the sale arrives.
    let (ann, bob) = (admitted(sale_id, "ann"), admitted(sale_id, "bob"));
    send_admission(&running, &ann).await;
    wait_status(&running, &ann, "confirmed").await;
    let sent = Instant::now();
    send_admission(&running, &bob).await;
    wait_parked(&running, &bob).await;

    wait_status(&running, &bob, "rejected").await;
    assert!(sent.elapsed() >= wait, "not before its wait is over");
    let reason: Option<String> =
        sqlx::query_scalar("SELECT reject_reason FROM orders WHERE order_id = ?")
            .bind(&bob.order_id)
            .fetch_one(&running.db)
            .await
            .expect("reason");
    assert_eq!(reason.as_deref(), Some("sold_out"));
    assert_eq!(running.sold(sale_id).await, 1);
    let metrics = running.metrics.clone();
    assert_eq!(
        wait_for(&metrics.admissions_rejected_after_wait, 1).await,
        1
    );
    assert_eq!(
        refusals_announced(&running, 1).await,
        [(
            bob.order_id.clone(),
            format!("order.rejected:{}", bob.order_id),
            format!("trace-{}", bob.order_id)
        )],
        "announced once, with the admission's trace id"
    );
    assert_eq!(parked_left(&running).await, 0, "nothing left to announce");
    running.stop().await;
    assert_eq!(metrics.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.admissions_unparked.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_admission_that_waits_is_neither_parked_again_nor_stored_twice() {
    let mut running = waiting_persister(60_000).await;
    running.resume().await;
    let sale_id = sale(&running, 1, 5).await;
    let (ann, bob) = (admitted(sale_id, "ann"), admitted(sale_id, "bob"));
    send_admission(&running, &ann).await;
    wait_status(&running, &ann, "confirmed").await;
    send_admission(&running, &bob).await;
    let parked_at = wait_parked(&running, &bob).await;

    // Re-sent while it waits (a relay's re-send, a replay after a crash).
    let duplicates = running.metrics.duplicates.load(Ordering::Relaxed);
    send_admission(&running, &bob).await;
    assert_eq!(
        wait_for(&running.metrics.duplicates, duplicates + 1).await,
        duplicates + 1
    );
    assert_eq!(
        parked(&running, "stock", &bob).await,
        [parked_at],
        "one row, its wait not restarted"
    );
    assert_eq!(status(&running, &bob).await, None);

    // Re-sent again in the batch that gives ann's unit back.
    running.pause().await;
    send_admission(&running, &bob).await;
    send_end(&running, &cancelled(&ann)).await;
    running.resume().await;
    wait_status(&running, &bob, "confirmed").await;
    assert_eq!(
        wait_for(&running.metrics.duplicates, duplicates + 2).await,
        duplicates + 2
    );

    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE order_id = ?")
        .bind(&bob.order_id)
        .fetch_one(&running.db)
        .await
        .expect("rows");
    assert_eq!(rows, 1);
    let history: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_history WHERE order_id = ?")
        .bind(&bob.order_id)
        .fetch_one(&running.db)
        .await
        .expect("history");
    assert_eq!(history, 1, "confirmed once");
    assert_eq!(running.sold(sale_id).await, 1);
    assert_eq!(parked_left(&running).await, 0, "its wait is over");
    assert_eq!(refusals_announced(&running, 0).await, []);
    let metrics = running.metrics.clone();
    running.stop().await;
    assert_eq!(metrics.persisted.load(Ordering::Relaxed), 2);
    assert_eq!(metrics.admissions_parked.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.admissions_unparked.load(Ordering::Relaxed), 1);
}
