//! An order MySQL refused is announced (`order.rejected`) again when its message comes again
//! (a replay after a crash before the offsets were committed), under the same event id, and
//! the replay writes nothing.

use std::time::Duration;

use flashgate_events::OrderAdmitted;

use crate::persisting::{Running, order, start};

/// Sends `order` under `key`: every message of this test on one partition, in order.
async fn send_keyed(running: &Running, order: &OrderAdmitted, key: &str) {
    let envelope = order.clone().into_envelope("trace".into());
    let topic = running.settings.kafka.orders_topic.clone();
    running
        .send_to(&topic, key, &serde_json::to_vec(&envelope).expect("json"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_order_is_announced_again_when_its_message_is_replayed() {
    let running = start().await;
    let sale_id = running.sale(1).await;
    let first = order(sale_id, 1, 1);
    let refused = OrderAdmitted {
        order_id: format!("{}-refused", first.order_id),
        user_id: "user-2".into(),
        ..first.clone()
    };
    // One key for all: one partition, so each message is handled after the one before.
    let key = first.order_id.clone();
    send_keyed(&running, &first, &key).await;
    send_keyed(&running, &refused, &key).await;
    let rejected = format!(
        "SELECT COUNT(*) FROM orders WHERE order_id = '{}' AND status = 'rejected'",
        refused.order_id
    );
    assert_eq!(running.wait_count(&rejected, 1).await, 1);

    send_keyed(&running, &refused, &key).await;
    let marker = OrderAdmitted {
        order_id: format!("{}-marker", first.order_id),
        user_id: "user-3".into(),
        ..first.clone()
    };
    send_keyed(&running, &marker, &key).await;
    let stored = format!(
        "SELECT COUNT(*) FROM orders WHERE order_id = '{}'",
        marker.order_id
    );
    assert_eq!(running.wait_count(&stored, 1).await, 1);

    let settings = running.settings.clone();
    let topic = settings.kafka.compensations_topic.clone();
    let announced = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &topic,
            3,
            Duration::from_secs(60),
            Duration::from_secs(2),
        )
    })
    .await
    .expect("reader");
    let events: Vec<(String, String)> = announced
        .iter()
        .map(|m| {
            let event: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            (
                event["type"].as_str().unwrap_or_default().to_owned(),
                event["data"]["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let refusal = ("order.rejected".to_owned(), refused.order_id.clone());
    let marker_refusal = ("order.rejected".to_owned(), marker.order_id.clone());
    assert_eq!(
        events,
        [refusal.clone(), refusal, marker_refusal],
        "announced on the first delivery and again on the replay"
    );
    let ids: Vec<String> = announced
        .iter()
        .take(2)
        .map(|m| {
            let event: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            event["event_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(ids[0], ids[1], "under one event id");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE sale_id = ?")
        .bind(sale_id)
        .fetch_one(&running.db)
        .await
        .expect("count");
    assert_eq!(rows, 3, "the replay wrote nothing");
    running.stop().await;
}
