//! The checks catch what they promise to: a forged order in MySQL, and a wrong expectation.

use flashgate_loadtest::invariants::broken;
use flashgate_loadtest::options::Scenario;
use flashgate_loadtest::recheck::recheck;
use flashgate_loadtest::run::run;

use crate::helpers::{small, spawn_stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_in_mysql_that_no_shopper_was_told_about_is_detected_and_named() {
    let stack = spawn_stack().await;
    let report = run(&stack.settings, small(Scenario::PurchaseRush, 40, 10))
        .await
        .expect("run");
    assert!(report.passed(), "{}", report.markdown());
    let sale_id = report.sale_id.expect("sale");

    // A duplicate the pipeline never made: a row no 202 announced.
    sqlx::query(
        "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, status, admitted_at) \
         VALUES (?, ?, 'forger', 1, 1000, 1000, 'confirmed', UTC_TIMESTAMP(3))",
    )
    .bind(format!("{sale_id}-forged"))
    .bind(sale_id)
    .execute(&stack.db)
    .await
    .expect("insert the forged order");
    let checks = recheck(&stack.settings, &report).await.expect("recheck");

    // Named as unknown; and MySQL now shows 11 units live of 10, one more than `sold`.
    let broken = broken(&checks);
    let names: Vec<_> = broken.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "orders in MySQL == admitted",
            "MySQL sold == units in confirmed + paid orders",
            "no unit sold twice",
            // 11 units confirmed in MySQL, 10 held in Redis.
            "reconcile-stock finds Redis and MySQL agree"
        ],
        "{checks:#?}"
    );
    assert!(
        broken[0]
            .evidence
            .contains(&format!("in MySQL but never told 1 ({sale_id}-forged)")),
        "{}",
        broken[0].evidence
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_order_and_a_wrong_demand_are_detected() {
    let stack = spawn_stack().await;
    let mut report = run(&stack.settings, small(Scenario::PurchaseRush, 40, 10))
        .await
        .expect("run");
    assert!(report.passed(), "{}", report.markdown());
    let sale_id = report.sale_id.expect("sale");

    // One admitted order vanishes from MySQL; and the harness forgets all but 5 of the
    // shoppers who asked, so it expects 5 admissions where Redis made 10.
    let (lost,): (String,) =
        sqlx::query_as("SELECT order_id FROM orders WHERE sale_id = ? LIMIT 1")
            .bind(sale_id)
            .fetch_one(&stack.db)
            .await
            .expect("an order");
    sqlx::query("DELETE FROM orders WHERE order_id = ?")
        .bind(&lost)
        .execute(&stack.db)
        .await
        .expect("delete");
    report.observed.buyers_asked.retain(|shopper| *shopper < 5);
    let checks = recheck(&stack.settings, &report).await.expect("recheck");

    let broken = broken(&checks);
    let names: Vec<_> = broken.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "admitted == min(stock, demand)",
            "orders in MySQL == admitted",
            // `sold` still counts the deleted order's unit.
            "MySQL sold == units in confirmed + paid orders",
            "reconcile-stock finds Redis and MySQL agree"
        ],
        "{checks:#?}"
    );
    assert!(
        broken[0].evidence.contains("demand 5 → expected 5"),
        "{}",
        broken[0].evidence
    );
    assert!(
        broken[1]
            .evidence
            .contains(&format!("told but not in MySQL 1 ({lost})")),
        "{}",
        broken[1].evidence
    );
}
