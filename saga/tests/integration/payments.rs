//! A shopper pays an order and the saga takes it to its end: paid (one charge), cancelled
//! (declined: the unit back for the next shopper), paid after a flaky provider's retries, paid
//! through the lookup after a charge that outlived its call.

use flashgate_saga::metrics::Call;

use crate::helpers::{eventually, psp_settings, stack_with, unique};

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_with_tok_ok_charges_once_pays_the_order_and_is_announced() {
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(5).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;

    stack.pay(&order, &user, "tok_ok").await;

    let row = stack.settled(&order, "completed").await;
    assert_eq!(row.attempts, 1);
    assert!(row.provider_ref.is_some());
    assert_eq!(stack.record(sale, &order).await.0, "paid");
    assert_eq!(stack.psp.succeeded(&order), 1);
    assert_eq!(stack.psp.provider.charges_for(&order).len(), 1);
    let shown = stack.order(&order, &user).await;
    assert_eq!(
        shown.json["payment"]["status"], "completed",
        "{}",
        shown.json
    );
    assert_eq!(shown.json["payment"]["attempts"], 1);
    let outcomes = stack.outcomes(1);
    assert_eq!(outcomes.len(), 1, "one announcement");
    assert_eq!(
        (outcomes[0].0.as_str(), outcomes[0].1.as_str()),
        (order.as_str(), "payment.completed")
    );
    assert_eq!(
        outcomes[0].2["event_id"],
        format!("payment.completed:{order}")
    );
    assert_eq!(outcomes[0].2["data"]["amount"], 1999);
    assert_eq!(saga.metrics.outcomes("completed"), 1);
    saga.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_payment_cancels_the_order_and_its_unit_is_bought_by_the_next_shopper() {
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(1).await;
    let (ann, bob) = (unique("ann"), unique("bob"));
    let order = stack.buy(sale, &ann).await;
    assert_eq!(
        stack.purchase(sale, &bob).await.json["error"]["code"],
        "sold_out"
    );

    stack.pay(&order, &ann, "tok_declined").await;

    let row = stack.settled(&order, "failed").await;
    assert_eq!(row.failure_code.as_deref(), Some("card_declined"));
    assert_eq!(
        stack.record(sale, &order).await,
        ("cancelled".to_owned(), "payment_declined".to_owned())
    );
    assert_eq!(stack.psp.succeeded(&order), 0);
    assert_eq!(stack.stock(sale).await, 1, "the unit is back");
    let next = stack.purchase(sale, &bob).await;
    assert_eq!(next.status, http::StatusCode::ACCEPTED, "{}", next.json);
    let shown = stack.order(&order, &ann).await;
    assert_eq!(shown.json["payment"]["status"], "failed", "{}", shown.json);
    assert_eq!(shown.json["payment"]["failure_code"], "card_declined");
    let outcomes = stack.outcomes(1);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].1, "payment.failed");
    saga.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flaky_provider_is_retried_with_backoff_until_one_charge_succeeds() {
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(5).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;

    stack.pay(&order, &user, "tok_flaky").await;

    let row = stack.settled(&order, "completed").await;
    assert_eq!(row.attempts, 3, "two 503s, then the charge");
    assert_eq!(stack.record(sale, &order).await.0, "paid");
    assert_eq!(stack.psp.succeeded(&order), 1);
    assert_eq!(saga.metrics.calls(Call::Charge, "unknown"), 2);
    assert_eq!(
        saga.metrics.calls(Call::Lookup, "not_found"),
        2,
        "each unknown outcome looked up"
    );
    saga.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_answered_after_the_timeout_is_resolved_through_the_lookup_and_charged_once() {
    // tok_slow answers after 3 s; the saga waits 1 s: the charge is made, its answer lost.
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(5).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;

    stack.pay(&order, &user, "tok_slow").await;

    let row = stack.settled(&order, "completed").await;
    assert_eq!(row.attempts, 1, "found by its key, never charged again");
    assert_eq!(stack.psp.provider.charges_for(&order).len(), 1);
    assert_eq!(stack.psp.succeeded(&order), 1);
    assert_eq!(stack.record(sale, &order).await.0, "paid");
    assert_eq!(saga.metrics.calls(Call::Charge, "unknown"), 1);
    assert_eq!(saga.metrics.calls(Call::Lookup, "succeeded"), 1);
    assert!(
        eventually(|| async {
            stack.order(&order, &user).await.json["payment"]["status"] == "completed"
        })
        .await
    );
    saga.stop().await;
}
