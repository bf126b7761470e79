//! Two notifier instances on one database and one consumer group: each sweeps every due row,
//! including those the other has in hand, yet each event reaches its webhook once (the rows'
//! leases).

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn two_notifiers_on_one_database_and_group_deliver_each_event_once() {
    let shop = Receiver::spawn(true).await;
    // Slow: each delivery stays in hand half a second, while the other instance's sweep
    // (every 200 ms) reads its row as due and pending.
    shop.set(Mode::Slow);
    let mut harness = Harness::new(9).await;
    harness.add_webhook("shop", shop.webhook(5_000));
    harness.route(&["order.paid"], &["webhook:shop"]);
    let first = harness.start().await;
    let second = harness.start().await;

    let tag = unique("two");
    let events: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            let order = format!("{tag}-{i}");
            event(
                "order.paid",
                &order,
                json!({"order_id": order, "sale_id": 1, "user_id": "u", "quantity": 1,
                       "end": "paid", "reason": null, "at": chrono::Utc::now().to_rfc3339()}),
            )
        })
        .collect();
    for event in &events {
        harness.publish(event).await;
    }
    let delivered = eventually(PATIENCE, || shop.counts().len() == events.len()).await;
    // Time for a second sending of any of them to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert!(delivered, "{:?}", shop.counts());
    let twice: Vec<(String, usize)> = shop.counts().into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(
        shop.bad_signatures
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let rows = harness.rows().await;
    assert_eq!(rows.len(), events.len());
    assert!(rows.iter().all(|r| r.3 == "sent"), "{rows:?}");
    first.stop().await;
    second.stop().await;
}
