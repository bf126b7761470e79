//! The lease and the fence, on MySQL alone: one instance owns a payment while its lease runs;
//! after it ran out another takes it over, and the first one's writes change nothing; a refund
//! asked meanwhile fences the worker's snapshot too.

use std::time::Duration;

use chrono::Utc;
use flashgate_events::RefundRequested;
use flashgate_saga::payment::{RefundCause, Status};
use flashgate_saga::requests::{self, RefundIntake};
use flashgate_saga::steps;
use flashgate_saga::store::{Next, Store};
use sqlx::MySqlPool;

use crate::helpers::store_request;

async fn database() -> MySqlPool {
    let mut settings = flashgate_testkit::stack_settings();
    let db = flashgate_testkit::fresh_database(&mut settings).await;
    flashgate_persister::db::migrate(&db)
        .await
        .expect("migrate");
    db
}

async fn request(db: &MySqlPool, order_id: &str) {
    assert!(store_request(db, order_id).await, "a new request");
    assert!(!store_request(db, order_id).await, "the same request again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_is_claimed_by_one_instance_at_a_time_and_taken_over_only_after_its_lease() {
    let db = database().await;
    request(&db, "7-a").await;
    let store = Store {
        db: db.clone(),
        lease: Duration::from_millis(400),
    };

    let first = store.claim("one#1", 10).await.expect("claim");
    let second = store.claim("two#1", 10).await.expect("claim");

    assert_eq!(first.len(), 1);
    assert!(second.is_empty(), "held by the first while its lease runs");
    let claimed = &first[0].payment;
    let keyed = steps::before_charge(claimed, 1);
    assert!(
        store
            .save("one#1", claimed, &keyed, Next::Keep)
            .await
            .expect("save")
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    let taken = store.claim("two#2", 10).await.expect("claim");
    assert_eq!(taken.len(), 1, "taken over after the lease ran out");
    assert_eq!(taken[0].payment.charge_key.as_deref(), Some("7-a:1"));
    // The first owner's next write changes nothing: it has lost the payment.
    let charged = steps::after_charge(&keyed, &steps::ChargeReply::Succeeded("ch_1".into()));
    assert!(
        !store
            .save("one#1", &keyed, &charged.payment, Next::Keep)
            .await
            .expect("save")
    );
    let moved = steps::after_lookup(&taken[0].payment, &steps::Found::Succeeded("ch_1".into()))
        .expect("found");
    assert!(
        store
            .save("two#2", &taken[0].payment, &moved.payment, Next::Keep)
            .await
            .expect("save")
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refund_asked_while_a_payment_is_worked_fences_the_workers_next_write() {
    let db = database().await;
    request(&db, "7-b").await;
    let store = Store {
        db: db.clone(),
        lease: Duration::from_secs(10),
    };
    let claimed = store
        .claim("one#1", 10)
        .await
        .expect("claim")
        .remove(0)
        .payment;
    let keyed = steps::before_charge(&claimed, 1);
    assert!(
        store
            .save("one#1", &claimed, &keyed, Next::Keep)
            .await
            .expect("save")
    );

    let refund = RefundRequested {
        order_id: "7-b".to_owned(),
        sale_id: 7,
        user_id: "ann".to_owned(),
        reason: "by a manager".to_owned(),
        requested_at: Utc::now(),
    };
    let mut tx = db.begin().await.expect("tx");
    let intake = requests::store_refund(&mut tx, &refund, "t")
        .await
        .expect("refund");
    tx.commit().await.expect("commit");
    assert_eq!(intake, RefundIntake::Mark);

    let charged = steps::after_charge(&keyed, &steps::ChargeReply::Succeeded("ch_1".into()));
    assert!(
        !store
            .save("one#1", &keyed, &charged.payment, Next::Keep)
            .await
            .expect("save"),
        "the worker's snapshot is stale: it lets go"
    );
    store.release("one#1", "7-b").await.expect("release");
    let again = store
        .claim("one#2", 10)
        .await
        .expect("claim")
        .remove(0)
        .payment;
    assert_eq!(again.refund_cause, Some(RefundCause::Cancel));
    assert_eq!(again.status, Status::Pending);
    assert_eq!(
        again.charge_key.as_deref(),
        Some("7-b:1"),
        "looked up before any other charge"
    );
    db.close().await;
}
