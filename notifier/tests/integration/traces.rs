//! One trace per order in the notifier: each attempt of a delivery (retried, then sent) is
//! logged in a span carrying the `order_id` its event names and the event's trace id (the
//! JSON lines as the binary prints them, captured in this process).

use flashgate_testkit::logs::Captured;
use serde_json::{Value, json};

use crate::helpers::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_retried_then_sent_is_logged_with_its_order_id_and_the_event_s_trace_id() {
    // Arrange: the production JSON logs, with the notifier's debug lines; a webhook failing
    // for now.
    let captured = Captured::install("info,flashgate_notifier=debug");
    let sink = SmtpSink::start();
    let shop = Receiver::spawn(true).await;
    let mut harness = Harness::new(sink.port).await;
    harness.add_webhook("shop", shop.webhook(2_000));
    harness.route(&["order.paid"], &["webhook:shop"]);
    harness.settings.notifier.breaker_failures = 1_000;
    harness.settings.notifier.max_attempts = 100;
    shop.set(Mode::Fail);
    let running = harness.start().await;
    let order_id = format!("7-{}", unique("o"));
    let mut paid = event(
        "order.paid",
        &order_id,
        json!({"order_id": order_id, "sale_id": 7, "user_id": "u1", "quantity": 1,
               "end": "paid", "reason": "test", "at": chrono::Utc::now().to_rfc3339()}),
    );
    paid["trace_id"] = json!(TRACE);

    // Act: the event arrives; the webhook fails, then recovers.
    harness.publish(&paid).await;
    let retried = eventually(PATIENCE, || captured.has("attempt failed")).await;
    shop.set(Mode::Ok);
    let sent = eventually(PATIENCE, || captured.has("delivery sent")).await;
    running.stop().await;

    // Assert: every attempt's line names the order and the event's trace id.
    let lines = captured.lines();
    assert!(retried && sent, "{lines:#?}");
    let attempts: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "attempt failed" || l["message"] == "delivery sent")
        .collect();
    for line in attempts {
        assert_eq!(line["span"]["order_id"], order_id.as_str(), "{line}");
        assert_eq!(line["span"]["trace_id"], TRACE, "{line}");
        assert_eq!(line["event_id"], format!("order.paid:{order_id}"), "{line}");
    }
}
