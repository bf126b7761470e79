//! One trace per order: a batch stores each admitted order's trace id (from its envelope) on
//! its row, a replay with another trace id leaves it, and the order's JSON log line carries
//! it as `span.trace_id` (the lines as the binary prints them, captured in this process); a
//! later end of the order (a cancel) is logged under the order's `span.order_id` and the
//! end's own trace id.

use std::time::Duration;

use chrono::Utc;
use flashgate_events::{OrderAdmitted, OrderEnd};
use flashgate_persister::batch::{self, Decoded};
use flashgate_persister::{db, trace};
use flashgate_testkit::logs::Captured;
use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;
use serde_json::Value;

use crate::helpers::{insert_sale, test_database};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn message(order: &OrderAdmitted, trace_id: &str) -> OwnedMessage {
    let envelope = order.clone().into_envelope(trace_id.to_owned());
    OwnedMessage::new(
        Some(serde_json::to_vec(&envelope).expect("json")),
        Some(order.order_id.as_bytes().to_vec()),
        "flashgate.orders".to_owned(),
        Timestamp::NotAvailable,
        0,
        0,
        None,
    )
}

#[tokio::test]
async fn an_order_s_row_and_its_log_line_carry_the_trace_id_it_arrived_with_and_a_replay_keeps_it()
{
    // Arrange
    let captured = Captured::install("info,flashgate_persister::trace=debug");
    let (_, pool) = test_database().await;
    db::migrate(&pool).await.expect("migrate");
    let sale_id = insert_sale(&pool, 5).await;
    let order = OrderAdmitted {
        order_id: format!("{sale_id}-traced"),
        sale_id,
        user_id: "u1".to_owned(),
        quantity: 1,
        unit_price: 100,
        amount: 100,
        admitted_at: Utc::now(),
        pay_by: None,
    };
    let earning = flashgate_testkit::stack_settings().points;

    // Act: the order, then a replay of it under another trace id.
    let first = [message(&order, TRACE)];
    let decoded = Decoded::new(&first);
    let written = batch::persist(&pool, &decoded, &[], &earning, Duration::from_secs(1))
        .await
        .expect("first batch");
    trace::log_orders(&decoded.orders, &decoded.traces, &written.orders);
    let replay = [message(&order, "another-trace")];
    batch::persist(
        &pool,
        &Decoded::new(&replay),
        &[],
        &earning,
        Duration::from_secs(1),
    )
    .await
    .expect("replay");

    // Assert
    let stored: Option<String> =
        sqlx::query_scalar("SELECT trace_id FROM orders WHERE order_id = ?")
            .bind(&order.order_id)
            .fetch_one(&pool)
            .await
            .expect("the order's row");
    assert_eq!(stored.as_deref(), Some(TRACE));
    let lines = captured.lines();
    let about: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["trace_id"] == TRACE)
        .collect();
    assert_eq!(about.len(), 1, "{lines:#?}");
    assert_eq!(about[0]["span"]["order_id"], order.order_id.as_str());
    assert_eq!(about[0]["status"], "confirmed");
    assert_eq!(about[0]["message"], "order persisted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_s_cancel_is_logged_with_its_order_id_and_the_cancel_s_trace_id() {
    // Arrange: the production JSON logs, with the persister's lines per order; an order stored.
    let captured = Captured::install("info,flashgate_persister::trace=debug");
    let running = crate::persisting::start().await;
    let sale_id = running.sale(5).await;
    let order = crate::lifecycle::admitted(sale_id, 1, 1);
    running.send(&order).await;
    crate::lifecycle::wait_status(&running, &order.order_id, "confirmed").await;

    // Act: its cancel arrives under the trace of the request that asked for it.
    let cancel = crate::lifecycle::ended(&order, OrderEnd::Cancelled, "cancelled_by_shopper");
    let envelope = cancel.into_envelope(TRACE.to_owned());
    let topic = running.settings.kafka.orders_topic.clone();
    running
        .send_to(
            &topic,
            &order.order_id,
            &serde_json::to_vec(&envelope).expect("json"),
        )
        .await;
    crate::lifecycle::wait_status(&running, &order.order_id, "cancelled").await;

    // Assert: its line is written just after the batch commits.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = captured
            .lines()
            .into_iter()
            .find(|l| l["message"] == "order end persisted");
        if let Some(line) = found {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line about the cancel: {:#?}",
            captured.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["span"]["order_id"], order.order_id.as_str(), "{line}");
    assert_eq!(line["span"]["trace_id"], TRACE, "{line}");
    assert_eq!(line["end"], "cancelled", "{line}");
    assert_eq!(line["status"], "stored", "{line}");
    running.stop().await;
}
