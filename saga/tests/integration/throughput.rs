//! What makes a payment cheaper and sooner without weakening it: fresh payments handed from
//! the intake to idle workers (no claim, no poll), outcomes announced off the workers' slots
//! (a failed announcement put off and announced later, never lost), and several payments'
//! rows written in one commit, each still fenced by its own lease.

use std::sync::atomic::Ordering;
use std::time::Duration;

use flashgate_saga::announce::{self, Announcement};
use flashgate_saga::backoff::Backoff;
use flashgate_saga::metrics::Metrics;
use flashgate_saga::payment::Status;
use flashgate_saga::publish::Publisher;
use flashgate_saga::steps::{self, Step};
use flashgate_saga::store::{Claimed, Next, Store, Write};
use rdkafka::producer::FutureProducer;
use sqlx::{MySqlPool, Row};

use crate::helpers::{psp_settings, stack_with, store_request, unique};

async fn database() -> (flashgate_config::Settings, MySqlPool) {
    let mut settings = flashgate_testkit::stack_settings();
    let db = flashgate_testkit::fresh_database(&mut settings).await;
    flashgate_persister::db::migrate(&db)
        .await
        .expect("migrate");
    (settings, db)
}

async fn request(db: &MySqlPool, order_id: &str) {
    assert!(store_request(db, order_id).await, "a new request");
}

/// Claims `order_id` for `owner` and writes it `completed` (charged, paid), unannounced, as a
/// worker leaves it for the announcer.
async fn completed(store: &Store, owner: &str) -> (Claimed, flashgate_saga::payment::Payment) {
    let claim = store.claim(owner, 1).await.expect("claim").remove(0);
    let mut done = steps::before_charge(&claim.payment, 1);
    done.status = Status::Completed;
    done.provider_ref = Some("ch_1".to_owned());
    assert!(
        store
            .save(owner, &claim.payment, &done, Next::Keep)
            .await
            .expect("save")
    );
    (claim, done)
}

async fn row(db: &MySqlPool, order_id: &str) -> (String, bool, bool, bool, u32) {
    let row = sqlx::query(
        "SELECT status, published_at IS NOT NULL AS published, next_at IS NOT NULL AS due, \
         lease_owner IS NOT NULL AS leased, retries FROM payments WHERE order_id = ?",
    )
    .bind(order_id)
    .fetch_one(db)
    .await
    .expect("row");
    (
        row.get("status"),
        row.get::<i64, _>("published") != 0,
        row.get::<i64, _>("due") != 0,
        row.get::<i64, _>("leased") != 0,
        row.get("retries"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_payment_is_handed_to_a_worker_without_waiting_for_a_claim() {
    // A poll so rare that only the hand-off (or the intake's wake) can start the payment soon.
    let stack = stack_with(psp_settings(), |settings| {
        settings.saga.poll_interval_ms = 60_000;
    })
    .await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(5).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;

    stack.pay(&order, &user, "tok_ok").await;

    let row = stack.settled(&order, "completed").await;
    assert_eq!(row.attempts, 1);
    assert_eq!(stack.psp.succeeded(&order), 1);
    assert_eq!(
        saga.metrics.handed_off.load(Ordering::Relaxed),
        1,
        "the intake leased the fresh row and handed it over"
    );
    assert_eq!(stack.outcomes(1).len(), 1, "announced once");
    saga.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_announcement_the_broker_refuses_is_put_off_claimed_again_and_announced() {
    let (mut settings, db) = database().await;
    settings.kafka.order_events_topic =
        flashgate_testkit::fresh_topic(&settings, "flashgate.test-order-events-", 1).await;
    let store = Store {
        db: db.clone(),
        lease: Duration::from_secs(10),
    };
    let metrics = std::sync::Arc::new(Metrics::default());
    let backoff = Backoff {
        base_ms: 10,
        cap_ms: 20,
    };
    request(&db, "7-ann").await;
    let (claim, done) = completed(&store, "one#1").await;

    // No broker where this producer looks: the send fails.
    let mut nowhere = settings.kafka.clone();
    nowhere.brokers = "127.0.0.1:9".to_owned();
    nowhere.message_timeout_ms = 1_000;
    let broken: FutureProducer = nowhere.producer_config().create().expect("producer");
    let (_, announcing) = announce::queue(
        4,
        Publisher::new(broken, &settings.kafka),
        store.clone(),
        metrics.clone(),
        backoff,
    );
    announcing
        .announce(vec![Announcement {
            owner: "one#1".to_owned(),
            payment: done.clone(),
            claimed_at: claim.claimed_at,
            claimed: claim.claimed,
        }])
        .await;
    let (status, published, due, leased, retries) = row(&db, "7-ann").await;
    assert_eq!(status, "completed");
    assert!(!published, "not recorded announced");
    assert!(due && !leased, "put off for any instance to claim again");
    assert_eq!(retries, 1);
    assert_eq!(metrics.kafka_errors.load(Ordering::Relaxed), 1);

    // Claimed again after its backoff: its next step is the announcement.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = store.claim("two#1", 1).await.expect("claim").remove(0);
    assert_eq!(steps::next_step(&again.payment, false), Step::Announce);
    let good: FutureProducer = settings.kafka.producer_config().create().expect("producer");
    let (_, announcing) = announce::queue(
        4,
        Publisher::new(good, &settings.kafka),
        store.clone(),
        metrics.clone(),
        backoff,
    );
    announcing
        .announce(vec![Announcement {
            owner: "two#1".to_owned(),
            payment: again.payment.clone(),
            claimed_at: again.claimed_at,
            claimed: again.claimed,
        }])
        .await;
    let (status, published, due, leased, _) = row(&db, "7-ann").await;
    assert_eq!(status, "completed");
    assert!(
        published && !due && !leased,
        "announced, nothing left to do"
    );
    let sent = flashgate_testkit::read_topic(
        &settings,
        &settings.kafka.order_events_topic,
        1,
        Duration::from_secs(20),
        Duration::from_secs(1),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].key, "7-ann");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_in_one_commit_are_each_fenced_by_their_own_lease() {
    let (_, db) = database().await;
    let store = Store {
        db: db.clone(),
        lease: Duration::from_millis(300),
    };
    request(&db, "7-kept").await;
    let (_, kept) = completed(&store, "one#1").await;
    request(&db, "7-lost").await;
    let (_, lost) = completed(&store, "one#2").await;
    // "one#2"'s lease runs out and another instance takes its payment over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    sqlx::query("UPDATE payments SET lease_until = NOW(3) + INTERVAL 10 SECOND WHERE order_id = ?")
        .bind("7-kept")
        .execute(&db)
        .await
        .expect("renew the first lease");
    let taken = store.claim("two#1", 10).await.expect("claim");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].payment.order_id, "7-lost");

    let writes = [
        Write {
            owner: "one#1",
            before: &kept,
            after: steps::announced(&kept).payment,
            next: Next::Never,
        },
        Write {
            owner: "one#2",
            before: &lost,
            after: steps::announced(&lost).payment,
            next: Next::Never,
        },
    ];
    let written = store.save_many(&writes).await.expect("one commit");

    assert_eq!(written, vec![true, false]);
    let (_, published, due, leased, _) = row(&db, "7-kept").await;
    assert!(published && !due && !leased);
    let (_, published, _, leased, _) = row(&db, "7-lost").await;
    assert!(!published, "the write of a lease lost changes nothing");
    assert!(leased, "still the new holder's");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saga_stopped_cleanly_leaves_its_successor_no_request_to_take_again() {
    // Offsets are committed without waiting during the run; the stop waits for the last.
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(5).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        let user = unique("ann");
        let order = stack.buy(sale, &user).await;
        stack.pay(&order, &user, "tok_ok").await;
        orders.push(order);
    }
    for order in &orders {
        stack.settled(order, "completed").await;
    }
    saga.stop().await;

    let successor = stack.start_saga().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        successor.metrics.consumed.load(Ordering::Relaxed),
        0,
        "nothing replayed to the next member of the group"
    );
    successor.stop().await;
}
