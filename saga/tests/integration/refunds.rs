//! Money given back: a charge that lands after its order was cancelled is refunded once and
//! the order stays cancelled; a paid order cancelled by its shopper is refunded once, then
//! cancelled with its unit back.

use flashgate_config::PspSettings;
use flashgate_gateway::auth::Role;
use serde_json::json;

use crate::helpers::{eventually, psp_settings, stack_with, unique};

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_that_lands_after_its_order_was_cancelled_is_refunded_once_and_the_order_stays_cancelled()
 {
    // The charge takes 2 s and the saga waits for it (5 s): the shopper cancels meanwhile.
    let psp = PspSettings {
        slow_ms: 2_000,
        ..psp_settings()
    };
    let stack = stack_with(psp, |settings| {
        settings.saga.provider_timeout_ms = 5_000;
        settings.saga.lease_ms = 10_000;
    })
    .await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(1).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;
    stack.pay(&order, &user, "tok_slow").await;
    assert!(eventually(|| async { stack.psp.provider.charges_for(&order).len() == 1 }).await);

    let cancelled = stack.cancel(&order, &user).await;

    assert!(cancelled.status.is_success(), "{}", cancelled.json);
    let row = stack.settled(&order, "refunded").await;
    assert_eq!(row.refund_reason.as_deref(), Some("order_already_ended"));
    assert!(row.refund_ref.is_some());
    assert_eq!(stack.record(sale, &order).await.0, "cancelled");
    assert_eq!(stack.psp.succeeded(&order), 1);
    assert_eq!(stack.psp.refunds(&order), 1);
    assert_eq!(
        stack.stock(sale).await,
        1,
        "the unit came back once, at the cancel"
    );
    let outcomes = stack.outcomes(1);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].1, "payment.refunded");
    assert_eq!(saga.metrics.outcomes("refunded"), 1);
    saga.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_order_cancelled_by_its_shopper_is_refunded_once_then_cancelled_with_its_unit_back()
{
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(1).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;
    stack.pay(&order, &user, "tok_ok").await;
    stack.settled(&order, "completed").await;
    assert_eq!(stack.stock(sale).await, 0);

    let first = stack.cancel(&order, &user).await;
    let second = stack.cancel(&order, &user).await;

    assert!(first.status.is_success(), "{}", first.json);
    assert!(
        second.status.is_success() || second.status.is_client_error(),
        "{}",
        second.json
    );
    let row = stack.settled(&order, "refunded").await;
    assert!(row.refund_ref.is_some());
    assert!(
        eventually(|| async { stack.record(sale, &order).await.0 == "cancelled" }).await,
        "the order ends cancelled after its refund: {:?}",
        stack.record(sale, &order).await
    );
    assert_eq!(stack.psp.succeeded(&order), 1);
    assert_eq!(stack.psp.refunds(&order), 1, "refunded at most once");
    assert_eq!(stack.stock(sale).await, 1, "the unit is back");
    let shown = stack.order(&order, &user).await;
    assert_eq!(
        shown.json["payment"]["status"], "refunded",
        "{}",
        shown.json
    );
    let kinds: Vec<String> = stack.outcomes(2).into_iter().map(|o| o.1).collect();
    assert_eq!(kinds, ["payment.completed", "payment.refunded"]);
    saga.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_order_with_no_charge_cancelled_by_a_manager_ends_cancelled_without_a_refund() {
    // Marked paid by a manager (money taken outside flashgate): the saga has no payment of
    // it, nothing to give back at the provider, but the cancel still needs its end.
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(1).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;
    let path = format!("/v1/admin/orders/{order}/mark-paid");
    let paid = stack
        .request(
            http::Method::POST,
            &path,
            "manager-1",
            Role::Manager,
            Some(json!({})),
        )
        .await;
    assert!(paid.status.is_success(), "{}", paid.json);

    let path = format!("/v1/admin/orders/{order}/cancel");
    let body = json!({"reason": "goodwill"});
    let cancelled = stack
        .request(
            http::Method::POST,
            &path,
            "manager-1",
            Role::Manager,
            Some(body),
        )
        .await;

    assert!(cancelled.status.is_success(), "{}", cancelled.json);
    let row = stack.settled(&order, "refunded").await;
    assert_eq!(row.refund_reason.as_deref(), Some("goodwill"));
    assert_eq!((row.provider_ref, row.refund_ref), (None, None));
    assert!(eventually(|| async { stack.record(sale, &order).await.0 == "cancelled" }).await);
    assert_eq!(stack.stock(sale).await, 1);
    assert!(stack.psp.provider.charges().is_empty());
    assert!(
        stack.outcomes(0).is_empty(),
        "nothing charged, nothing to announce"
    );
    saga.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_landing_after_a_manager_marked_the_order_paid_is_refunded_and_the_order_stays_paid()
 {
    // The charge takes 2 s; meanwhile a manager records a payment taken outside flashgate.
    // Redis then answers the saga's `pay` with "paid before" — but not by the saga.
    let psp = PspSettings {
        slow_ms: 2_000,
        ..psp_settings()
    };
    let stack = stack_with(psp, |settings| {
        settings.saga.provider_timeout_ms = 5_000;
        settings.saga.lease_ms = 10_000;
    })
    .await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(1).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;
    stack.pay(&order, &user, "tok_slow").await;
    assert!(eventually(|| async { stack.psp.provider.charges_for(&order).len() == 1 }).await);

    let path = format!("/v1/admin/orders/{order}/mark-paid");
    let paid = stack
        .request(
            http::Method::POST,
            &path,
            "manager-1",
            Role::Manager,
            Some(json!({})),
        )
        .await;

    assert!(paid.status.is_success(), "{}", paid.json);
    let row = stack.settled(&order, "refunded").await;
    assert_eq!(row.refund_reason.as_deref(), Some("order_already_ended"));
    assert_eq!(stack.psp.succeeded(&order), 1);
    assert_eq!(
        stack.psp.refunds(&order),
        1,
        "paid once: the saga's charge goes back"
    );
    assert_eq!(stack.record(sale, &order).await.0, "paid");
    saga.stop().await;
}
