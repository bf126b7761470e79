//! The intake: what it cannot act on goes to the dead-letter topic with the reason, a request
//! sent twice is one payment, and a charge for an order Redis does not know is given back.

use std::time::Duration;

use flashgate_events::PaymentRequested;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::helpers::{payment_request, psp_settings, stack_with};

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_goes_to_the_dead_letter_topic_and_a_request_sent_twice_is_one_payment() {
    let stack = stack_with(psp_settings(), |_| {}).await;
    let producer: FutureProducer = stack
        .settings
        .kafka
        .producer_config()
        .create()
        .expect("producer");
    let topic = &stack.settings.kafka.payments_topic;
    // An order of a sale Redis does not know: charged, then Redis cannot pay it, so it is
    // refunded.
    let order = format!("999999-{}", uuid::Uuid::new_v4().simple());
    let request = payment_request(&order, 999_999, 500);
    let valid = serde_json::to_vec(&request.clone().into_envelope("trace-9".into())).expect("json");
    let zero = PaymentRequested {
        amount: 0,
        ..request.clone()
    };
    let zero = serde_json::to_vec(&zero.into_envelope("t".into())).expect("json");
    send(&producer, topic, &order, b"not json").await;
    send(&producer, topic, &order, &valid).await;
    send(&producer, topic, &order, &zero).await;
    send(&producer, topic, &order, &valid).await;

    let saga = stack.start_saga().await;

    let row = stack.settled(&order, "refunded").await;
    assert_eq!(row.refund_reason.as_deref(), Some("order_already_ended"));
    assert_eq!(
        stack.psp.provider.charges_for(&order).len(),
        1,
        "one payment, one charge"
    );
    assert_eq!(stack.psp.refunds(&order), 1);
    let dead = flashgate_testkit::read_topic(
        &stack.settings,
        &stack.settings.kafka.dead_letter_topic,
        2,
        Duration::from_secs(20),
        Duration::from_secs(2),
    );
    let mut reasons: Vec<String> = dead.iter().map(|m| m.headers["reason"].clone()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("amount"), "{reasons:?}");
    assert!(reasons[1].starts_with("undecodable"), "{reasons:?}");
    assert_eq!(dead[0].headers["source_topic"], *topic);
    assert_eq!(
        saga.metrics
            .dead_lettered
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    saga.stop().await;
}
