//! The lifecycle scenario paying through the provider (`--pay-with provider`) on the real
//! stack, with the virtual provider and the saga in this process: every order paid with
//! tok_ok ends paid, its time from the 202 to `paid` comes from MySQL, the invariants hold;
//! and a paid order that did not end paid is named.

use flashgate_loadtest::invariants::broken;
use flashgate_loadtest::options::{PayWith, Scenario, Shares};
use flashgate_loadtest::recheck::recheck;
use flashgate_loadtest::run::run;

use crate::helpers::{PSP_LATENCY_MS, small, spawn_paying_stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_run_paying_through_the_provider_ends_every_tok_ok_order_paid_and_names_one_that_did_not()
 {
    let stack = spawn_paying_stack().await;
    // No abandoned share: nothing waits for the 30 s window.
    let mut options = small(Scenario::Lifecycle, 200, 40);
    options.lifecycle_shares = Shares::parse("3:1:0").expect("shares");
    options.pay_with = PayWith::Provider;

    let report = run(&stack.settings, options).await.expect("run");

    assert!(report.passed(), "{}", report.markdown());
    let sale = report.evidence.sale.as_ref().expect("sale evidence");
    let payments = sale.payments.as_ref().expect("payments evidence");
    assert!(payments.requested > 0, "{payments:#?}");
    assert_eq!(
        report.status_counts.get("payment 202"),
        Some(&payments.requested)
    );
    assert_eq!(
        (
            payments.ended_paid,
            payments.refused,
            payments.paid_percent()
        ),
        (payments.requested, 0, 100.0)
    );
    assert!(payments.settled.as_ref().is_some_and(|s| s.all_final));
    assert_eq!(
        payments.rows.get("completed").map(|r| r.count),
        Some(payments.requested),
        "one completed payment row each: {:?}",
        payments.rows
    );
    // Every paid order timed, from MySQL; none faster than the provider answers.
    let times = &payments.time_to_paid;
    assert_eq!(times.count, payments.requested);
    assert!(times.p50_ms >= PSP_LATENCY_MS as f64 && times.max_ms >= times.p99_ms);
    assert_eq!(
        (sale.answered_paid, sale.redis_paid, sale.mysql_units.paid),
        (
            payments.requested,
            payments.requested as i64,
            payments.requested
        )
    );
    // Cancelled units were sold again: more admissions than units.
    assert!(sale.answered_admitted > 40, "{sale:#?}");
    let markdown = report.markdown();
    assert!(
        markdown.contains("Payments through the provider (tok_ok)")
            && markdown.contains("through the provider with tok_ok"),
        "{markdown}"
    );

    // One paid order that MySQL shows expired instead: named by the payments check (and by
    // the statuses, the paid units and the operators' reconciliation).
    let (shopper, order_id) = report.observed.payments[0].clone();
    sqlx::query("UPDATE orders SET status = 'expired' WHERE order_id = ?")
        .bind(&order_id)
        .execute(&stack.db)
        .await
        .expect("update");
    let checks = recheck(&stack.settings, &report).await.expect("recheck");
    let broken = broken(&checks);
    let payments_check = broken
        .iter()
        .find(|c| c.name == "every payment through the provider ends as its token says")
        .unwrap_or_else(|| panic!("shopper {shopper}'s order not named: {checks:#?}"));
    assert!(
        payments_check
            .evidence
            .contains(&format!("{order_id}: is expired")),
        "{}",
        payments_check.evidence
    );
    assert!(
        broken
            .iter()
            .any(|c| c.name == "every order's status in MySQL is the one the run gave it"),
        "{checks:#?}"
    );
}
