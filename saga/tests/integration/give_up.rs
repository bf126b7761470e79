//! A payment the provider never answers in time: at its deadline (pay_by + grace) the saga
//! gives it up — the order expires — and a charge that turns out to have gone through is
//! refunded. The deadline is moved to now (in Redis and in the row) instead of waiting for it;
//! the gateways' sweeper is slowed so that the saga's expiry is the one that happens.

use flashgate_config::{PspSettings, Settings};
use flashgate_gateway::keys::SaleKeys;
use fred::prelude::{ClientLike, SortedSetsInterface};

use crate::helpers::{Stack, eventually, psp_settings, stack_with, unique};

fn slow_sweeper(settings: &mut Settings) {
    settings.gateway.lifecycle_sweep_interval_ms = 600_000;
}

/// Moves the order's deadline to now: its hold in Redis (the paying order's deadline) and its
/// payment's `give_up_at`, due at once.
async fn deadline_now(stack: &Stack, sale_id: u64, order_id: &str) {
    let keys = SaleKeys::new(&stack.settings.redis.key_prefix, sale_id);
    let (secs, micros): (i64, i64) = stack
        .redis
        .next()
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await
        .expect("TIME");
    let now_ms = secs * 1000 + micros / 1000 - 1;
    let _: () = stack
        .redis
        .zadd(
            &keys.holds,
            None,
            None,
            false,
            false,
            (now_ms as f64, order_id),
        )
        .await
        .expect("hold");
    sqlx::query(
        "UPDATE payments SET give_up_at = NOW(3) - INTERVAL 1 SECOND, next_at = NOW(3) \
         WHERE order_id = ?",
    )
    .bind(order_id)
    .execute(&stack.db)
    .await
    .expect("deadline");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_the_provider_never_answers_is_given_up_at_its_deadline_and_the_order_expires() {
    let mut stack = stack_with(psp_settings(), slow_sweeper).await;
    stack.psp.stop().await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(1).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;
    stack.pay(&order, &user, "tok_ok").await;
    assert!(
        eventually(|| async {
            saga.metrics
                .calls(flashgate_saga::metrics::Call::Lookup, "unknown")
                >= 2
        })
        .await,
        "the saga keeps asking while the provider is down"
    );
    assert_eq!(stack.payment(&order).await.map(|p| p.attempts), Some(1));

    deadline_now(&stack, sale, &order).await;
    assert!(
        eventually(|| async { stack.record(sale, &order).await.0 == "expired" }).await,
        "the order expires at its deadline even while the provider is down"
    );
    // Whether a charge went through is learnt once the provider is back.
    stack.psp.start().await;

    let row = stack.settled(&order, "given_up").await;
    assert_eq!(row.failure_code.as_deref(), Some("payment_unanswered"));
    assert_eq!(
        stack.record(sale, &order).await,
        ("expired".to_owned(), "payment_unanswered".to_owned())
    );
    assert_eq!(stack.psp.provider.charges_for(&order).len(), 0);
    assert_eq!(stack.stock(sale).await, 1, "the unit is back");
    let shown = stack.order(&order, &user).await;
    assert_eq!(
        shown.json["payment"]["status"], "given_up",
        "{}",
        shown.json
    );
    let kinds: Vec<String> = stack.outcomes(1).into_iter().map(|o| o.1).collect();
    assert_eq!(kinds, ["payment.failed"]);
    saga.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_found_to_have_gone_through_after_the_give_up_is_refunded_and_the_order_expires() {
    // tok_slow is charged at once and answered after 8 s; the saga waits 4 s for it, then
    // looks it up. The provider goes down right after taking the charge — well within those
    // 4 s however loaded the machine is (with 1 s, a busy CI box once let the lookup find the
    // charge first) — so the saga cannot learn of it before the deadline. Its lease outlasts
    // the wait, so no second attempt overlaps the first.
    let psp = PspSettings {
        slow_ms: 8_000,
        ..psp_settings()
    };
    let mut stack = stack_with(psp, |settings| {
        slow_sweeper(settings);
        settings.saga.provider_timeout_ms = 4_000;
        settings.saga.lease_ms = 10_000;
    })
    .await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(1).await;
    let user = unique("ann");
    let order = stack.buy(sale, &user).await;
    stack.pay(&order, &user, "tok_slow").await;
    assert!(eventually(|| async { stack.psp.provider.charges_for(&order).len() == 1 }).await);
    stack.psp.stop().await;
    assert!(
        eventually(|| async {
            stack
                .payment(&order)
                .await
                .is_some_and(|p| p.status == "pending")
                && saga
                    .metrics
                    .calls(flashgate_saga::metrics::Call::Lookup, "unknown")
                    >= 1
        })
        .await,
        "the outcome is unknown while the provider is down"
    );

    deadline_now(&stack, sale, &order).await;
    assert!(eventually(|| async { stack.record(sale, &order).await.0 == "expired" }).await);
    stack.psp.start().await;

    let row = stack.settled(&order, "refunded").await;
    assert_eq!(row.refund_reason.as_deref(), Some("payment_unanswered"));
    assert_eq!(row.attempts, 1);
    assert_eq!(stack.psp.succeeded(&order), 1);
    assert_eq!(stack.psp.refunds(&order), 1);
    assert_eq!(stack.record(sale, &order).await.0, "expired");
    saga.stop().await;
}
