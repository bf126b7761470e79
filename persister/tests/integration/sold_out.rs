//! A sale whose last unit MySQL sells is announced `sale.sold_out` on the lifecycle topic,
//! once, keyed by the sale; a refused admission of the sold-out sale announces nothing more.

use std::time::Duration;

use crate::lifecycle::{order_row, wait_status};
use crate::persisting::{order, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_selling_its_last_unit_is_announced_sold_out_once_keyed_by_the_sale() {
    let running = start().await;
    let sale_id = running.sale(2).await;
    let other_sale = running.sale(5).await;
    let (first, second) = (order(sale_id, 1, 1), order(sale_id, 2, 1));
    let unsold = order(other_sale, 1, 1);
    running.send(&first).await;
    running.send(&unsold).await;
    wait_status(&running, &first.order_id, "confirmed").await;
    running.send(&second).await;
    wait_status(&running, &second.order_id, "confirmed").await;
    let refused = order(sale_id, 3, 1);
    running.send(&refused).await;
    wait_status(&running, &refused.order_id, "rejected").await;
    assert_eq!(order_row(&running, &unsold.order_id).await.0, "confirmed");

    let settings = running.settings.clone();
    let topic = settings.kafka.order_events_topic.clone();
    let announced = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &topic,
            1,
            Duration::from_secs(60),
            Duration::from_secs(3),
        )
    })
    .await
    .expect("reader");
    let sold_out: Vec<(String, serde_json::Value)> = announced
        .into_iter()
        .map(|m| {
            (
                m.key,
                serde_json::from_slice::<serde_json::Value>(&m.payload).expect("json"),
            )
        })
        .filter(|(_, event)| event["type"] == "sale.sold_out")
        .collect();
    assert_eq!(sold_out.len(), 1, "announced once: {sold_out:?}");
    let (key, event) = &sold_out[0];
    assert_eq!(key, &sale_id.to_string());
    assert_eq!(event["event_id"], format!("sale.sold_out:{sale_id}:2"));
    assert_eq!(event["data"]["sale_id"], sale_id);
    assert_eq!(event["data"]["total"], 2);
    running.stop().await;
}
