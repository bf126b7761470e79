//! A small queued-rush against a gateway and a persister on the real stack: the draw checks
//! out, every joiner is admitted in position order and buys with its pass, nothing is sold
//! past the stock.

use std::time::Duration;

use flashgate_loadtest::options::Scenario;
use flashgate_loadtest::run::run;

use crate::helpers::{small, spawn_stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_rush_of_200_joiners_for_50_units_admits_all_in_draw_order_and_sells_50() {
    let stack = spawn_stack().await;
    let mut options = small(Scenario::QueuedRush, 0, 50);
    options.queue.joiners = 200;
    options.queue.admit_per_second = 200;
    options.queue.join_window = Duration::from_secs(3);
    options.queue.admission_timeout = Duration::from_secs(30);

    let report = run(&stack.settings, options).await.expect("run");

    assert!(report.passed(), "{}", report.markdown());
    let queue = report.queue.as_ref().expect("the waiting room's report");
    assert_eq!(
        (queue.joined, queue.in_draw, queue.admitted),
        (200, 200, 200)
    );
    assert_eq!(queue.bought, 50);
    assert_eq!(queue.purchases_refused.get("409 sold_out"), Some(&150));
    assert_eq!(queue.draw_verdict, "ok");
    assert_eq!(queue.positions_wrong, 0);
    assert_eq!(
        queue.probes.len(),
        6,
        "five without a pass, one with another's"
    );
    let to_last = queue.draw_to_last_admission_ms.expect("admitted");
    // 200 tickets at 200/s: about a second after the draw, give or take the admitter's ticks.
    assert!((500..=5_000).contains(&to_last), "{to_last} ms");
    let sale = report.evidence.sale.as_ref().expect("sale evidence");
    assert_eq!((sale.redis_admitted, sale.mysql_orders), (50, 50));
    assert!(report.markdown().contains("### waiting room"));
}
