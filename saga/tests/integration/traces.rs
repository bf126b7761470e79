//! One trace per order in the saga: a payment's steps (claimed, the charge attempt and its
//! answer, each step saved, its end, its outcome announced) are logged in a span carrying the order's `order_id` and
//! the trace id of the request that asked for the payment (the JSON lines as the binary
//! prints them, captured in this process).

use flashgate_testkit::logs::Captured;
use serde_json::Value;

use crate::helpers::{psp_settings, stack_with, unique};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_s_steps_are_logged_with_its_order_id_and_the_trace_id_of_the_payment_request() {
    // Arrange: the production JSON logs, with the saga's debug lines; an order bought.
    let captured = Captured::install("info,flashgate_saga=debug");
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(5).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;

    // Act: the shopper pays in a trace of their own.
    stack.pay_traced(&order, &user, "tok_ok", TRACEPARENT).await;
    stack.settled(&order, "completed").await;
    saga.stop().await;

    // Assert: every step of the payment is a saga line naming the order and the trace.
    let lines = captured.lines();
    let saga_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("flashgate_saga"))
        })
        .filter(|l| l["span"]["order_id"] == order.as_str())
        .collect();
    for step in [
        "payment claimed",
        "charge attempt",
        "charge answered",
        "payment step saved",
        "payment ended",
        "payment outcome announced",
    ] {
        assert!(
            saga_lines.iter().any(|l| l["message"] == step),
            "no saga line {step:?} with span.order_id {order}: {lines:#?}"
        );
    }
    for line in saga_lines {
        assert_eq!(line["span"]["trace_id"], TRACE, "{line}");
    }
}
