//! One small run of each scenario: the answers add up, the pipeline drains, every invariant
//! holds.

use std::time::Duration;

use flashgate_loadtest::options::{Mix, Mode, Scenario};
use flashgate_loadtest::run::run;

use crate::helpers::{small, spawn_stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_rush_of_300_shoppers_for_50_units_admits_exactly_50() {
    let stack = spawn_stack().await;

    let report = run(&stack.settings, small(Scenario::PurchaseRush, 300, 50))
        .await
        .expect("run");

    assert!(report.passed(), "{}", report.markdown());
    assert!(report.drained);
    assert_eq!(report.status_counts.get("purchase 202"), Some(&50));
    assert_eq!(
        report.status_counts.get("purchase 409 sold_out"),
        Some(&250)
    );
    assert_eq!(report.measured_requests, 300);
    assert!(report.latency_ms.p50 > 0.0);
    let sale = report.evidence.sale.as_ref().expect("sale evidence");
    assert_eq!((sale.redis_admitted, sale.mysql_orders), (50, 50));
    assert!(report.markdown().contains("All invariants held."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_twin_sends_every_other_arrival_to_it_and_reports_each_gateways_share() {
    let stack = spawn_stack().await;
    let twin = stack.twin().await;
    let mut options = small(Scenario::PurchaseRush, 300, 50);
    options.twin = Some(twin.url.clone());

    let report = run(&stack.settings, options).await.expect("run");

    assert!(report.passed(), "{}", report.markdown());
    assert_eq!(report.status_counts.get("purchase 202"), Some(&50));
    let [target, other] = &report.lanes[..] else {
        panic!("two lanes: {}", report.markdown());
    };
    assert_eq!(
        target.target,
        format!("http://{}", stack.settings.gateway.listen)
    );
    assert_eq!(other.target, twin.url);
    for lane in [target, other] {
        assert_eq!(lane.measured_requests, 150, "{}", report.markdown());
        assert_eq!(lane.status_counts.values().sum::<u64>(), 150);
        let histogram: u64 = lane.latency_histogram_us.iter().map(|[_, n]| n).sum();
        assert_eq!(histogram, 150);
    }
    let admitted = |lane: &flashgate_loadtest::lanes::Lane| {
        lane.status_counts.get("purchase 202").copied().unwrap_or(0)
    };
    assert_eq!(admitted(target) + admitted(other), 50);
    // The twin really answered its share: its own counters say so.
    assert_eq!(twin.requests("purchase").await, 150);
    assert!(report.markdown().contains(&twin.url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_traffic_in_closed_loop_is_all_answered_sold_out() {
    let stack = spawn_stack().await;
    let mut options = small(Scenario::SoldOut, 200, 20);
    options.mode = Mode::Closed;
    options.connections = 8;
    options.duration = Duration::from_secs(1);

    let report = run(&stack.settings, options).await.expect("run");

    assert!(report.passed(), "{}", report.markdown());
    assert_eq!(report.setup_status_counts.get("purchase 202"), Some(&20));
    assert_eq!(report.status_counts.len(), 1, "{:?}", report.status_counts);
    assert!(report.status_counts.contains_key("purchase 409 sold_out"));
    assert!(report.measured_requests > 0);
    assert_eq!(
        report.evidence.sale.as_ref().expect("sale").mysql_orders,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_of_purchases_and_status_polls_holds_every_invariant() {
    let stack = spawn_stack().await;
    let mut options = small(Scenario::Mixed, 100, 30);
    options.mix = Mix::parse("3:0:1").expect("mix");
    options.rate = 500;
    options.duration = Duration::from_secs(2);
    options.warmup = Duration::from_millis(200);

    let report = run(&stack.settings, options).await.expect("run");

    assert!(report.passed(), "{}", report.markdown());
    assert_eq!(report.policy_id, None, "no claims, no policy");
    assert_eq!(
        report
            .observed
            .count(flashgate_loadtest::scenario::Kind::Purchase, "202"),
        30
    );
    assert!(report.status_counts.get("status 200").copied().unwrap_or(0) > 0);
    assert!(
        report
            .status_counts
            .keys()
            .all(|label| !label.contains("status 404"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coupon_rush_of_200_shoppers_for_40_coupons_issues_exactly_40() {
    let stack = spawn_stack().await;

    let report = run(&stack.settings, small(Scenario::CouponRush, 200, 40))
        .await
        .expect("run");

    assert!(report.passed(), "{}", report.markdown());
    assert_eq!(report.status_counts.get("claim 201"), Some(&40));
    assert_eq!(report.status_counts.get("claim 409 exhausted"), Some(&160));
    let coupons = report.evidence.coupons.as_ref().expect("coupon evidence");
    assert_eq!((coupons.issued, coupons.mysql_coupons), (40, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_with_claims_holds_every_invariant() {
    let stack = spawn_stack().await;
    let mut options = small(Scenario::Mixed, 100, 30);
    options.coupons = Some(20);
    options.rate = 500;
    options.duration = Duration::from_secs(2);

    let report = run(&stack.settings, options).await.expect("run");

    assert!(report.passed(), "{}", report.markdown());
    assert!(report.status_counts.get("claim 201").copied().unwrap_or(0) > 0);
}
