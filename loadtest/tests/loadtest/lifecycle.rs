//! The lifecycle scenario on the real stack: orders paid, cancelled and abandoned; cancelled
//! units sold again; the abandoned ones expire; Redis and MySQL agree after the drain (and
//! `reconcile-stock` says so). One run (a 30 s payment window: about 40 s).

use std::time::Duration;

use flashgate_events::keys::SaleKeys;
use flashgate_loadtest::invariants::broken;
use flashgate_loadtest::options::{Scenario, Shares};
use flashgate_loadtest::recheck::recheck;
use flashgate_loadtest::run::run;
use fred::prelude::KeysInterface;

use crate::helpers::{small, spawn_stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_run_sells_cancelled_units_again_expires_the_abandoned_and_catches_a_unit_given_back_twice()
 {
    let stack = spawn_stack().await;
    let mut options = small(Scenario::Lifecycle, 300, 50);
    options.lifecycle_shares = Shares::parse("40:30:30").expect("shares");

    let report = run(&stack.settings, options).await.expect("run");

    assert!(report.passed(), "{}", report.markdown());
    assert!(report.drained);
    let sale = report.evidence.sale.as_ref().expect("sale evidence");
    let expiry = sale.expiry.as_ref().expect("the run waited for expiry");
    assert!(
        sale.answered_admitted > 50,
        "cancelled units were sold again: {sale:#?}"
    );
    assert!(sale.answered_paid > 0 && sale.answered_cancelled > 0);
    let abandoned = sale.answered_admitted - sale.answered_paid - sale.answered_cancelled;
    assert!(abandoned > 0 && expiry.latest_pay_by_ms.is_some());
    assert_eq!(
        (sale.mysql_units.expired, sale.redis_held, sale.redis_paid),
        (abandoned, 0, sale.answered_paid as i64)
    );
    assert_eq!(sale.redis_stock, 50 - sale.answered_paid as i64);
    assert_eq!(
        report.status_counts.get("pay 200"),
        Some(&sale.answered_paid)
    );

    // A unit given back twice (one more in the stock than the orders account for).
    let keys = SaleKeys::new(
        &stack.settings.redis.key_prefix,
        report.sale_id.expect("sale"),
    );
    let redis = stack.settings.redis.connect_pool().await.expect("redis");
    let _: i64 = redis.incr(&keys.stock).await.expect("incr");
    let checks = recheck(&stack.settings, &report).await.expect("recheck");
    let names: Vec<_> = broken(&checks).iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "Redis stock + held + paid == total, never below zero",
            "reconcile-stock finds Redis and MySQL agree",
            "every cancelled or expired unit came back"
        ],
        "{checks:#?}"
    );
    // The drain waited for the 30 s window: the run is the promise, not a shortcut.
    assert!(report.drain_seconds >= Duration::from_secs(25).as_secs_f64());
}
