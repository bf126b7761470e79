//! `flashgate-batch reconcile-stock` as an operator runs it, on sales set up in MySQL and
//! Redis as the gateway and the persister leave them after the drain: exit 0 when clean, 2 on
//! drift (named per sale) or a sale not drained, `--fix` repairs by compare-and-set and never
//! overwrites a counter that moved since the check, and a sale not in Redis is skipped.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flashgate_events::keys::SaleKeys;
use flashgate_testkit::{fresh_database, stack_settings, unique};
use fred::prelude::{HashesInterface, KeysInterface, SortedSetsInterface, StreamsInterface};
use fred::types::scripts::Script;
use serde_json::Value;

use crate::helpers::Stores;

/// A fresh, migrated database and a key prefix of this test alone; no points data.
async fn stores() -> Stores {
    let mut settings = stack_settings();
    let db = fresh_database(&mut settings).await;
    flashgate_persister::db::migrate(&db)
        .await
        .expect("migrate");
    settings.redis.key_prefix = unique("fgteststock");
    settings.batch.checkpoint_dir = crate::helpers::checkpoint_dir();
    let redis = settings.redis.connect_pool().await.expect("redis");
    Stores {
        settings,
        db,
        redis,
    }
}

/// A sale of `total` units in MySQL with orders of these `(status, units)`, and `sold` as the
/// persister keeps it (units of confirmed and paid orders). Returns its id.
async fn sale(stores: &Stores, total: u32, orders: &[(&str, u32)]) -> u64 {
    let sold: u32 = orders
        .iter()
        .filter(|(status, _)| matches!(*status, "confirmed" | "paid"))
        .map(|(_, units)| units)
        .sum();
    let sale_id = sqlx::query(
        "INSERT INTO sales (sku, title, price, total, sold, per_user_limit, starts_at, ends_at) \
         VALUES ('SKU', 'a sale', 500, ?, ?, 10, NOW(3) - INTERVAL 1 HOUR, \
         NOW(3) + INTERVAL 1 HOUR)",
    )
    .bind(total)
    .bind(sold)
    .execute(&stores.db)
    .await
    .expect("insert sale")
    .last_insert_id();
    for (n, (status, units)) in orders.iter().enumerate() {
        sqlx::query(
            "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, \
             status, admitted_at) VALUES (?, ?, ?, ?, 500, ?, ?, NOW(3))",
        )
        .bind(format!("o-{sale_id}-{n}"))
        .bind(sale_id)
        .bind(format!("u{n}"))
        .bind(units)
        .bind(units * 500)
        .bind(status)
        .execute(&stores.db)
        .await
        .expect("insert order");
    }
    sale_id
}

/// Puts the sale into Redis the way the gateway loads (and restores) a sale from MySQL: the
/// gateway's own `lua/load_sale.lua`, given the sale row, `held` and `paid` from its orders,
/// then its confirmed orders as open orders (records, holds, buyers) through
/// `lua/load_holds.lua` (in one page: these sales are small).
async fn load(stores: &Stores, sale_id: u64) {
    let (total, sold, paid): (i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(total AS SIGNED), CAST(sold AS SIGNED), \
         CAST((SELECT COALESCE(SUM(quantity), 0) FROM orders o \
               WHERE o.sale_id = s.sale_id AND status = 'paid') AS SIGNED) \
         FROM sales s WHERE sale_id = ?",
    )
    .bind(sale_id)
    .fetch_one(&stores.db)
    .await
    .expect("sale row");
    let open: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT order_id, user_id, CAST(quantity AS SIGNED) FROM orders \
         WHERE sale_id = ? AND status = 'confirmed' ORDER BY order_id",
    )
    .bind(sale_id)
    .fetch_all(&stores.db)
    .await
    .expect("open orders");
    let now_ms = chrono::Utc::now().timestamp_millis();
    let held: i64 = open.iter().map(|(_, _, units)| units).sum();
    let args: Vec<String> = [
        "active".to_owned(),
        (now_ms - 3_600_000).to_string(),
        (now_ms + 3_600_000).to_string(),
        "500".to_owned(),
        "10".to_owned(),
        total.to_string(),
        (total - sold).to_string(),
        sold.to_string(),
        "600000".to_owned(),
        held.to_string(),
        paid.to_string(),
        open.len().to_string(),
        "0".to_owned(),
    ]
    .into();
    let keys = keys(stores, sale_id);
    let loaded: i64 = Script::from_lua(include_str!("../../../lua/load_sale.lua"))
        .evalsha_with_reload(
            stores.redis.next(),
            vec![keys.sale.clone(), keys.stock, keys.buyers.clone()],
            args,
        )
        .await
        .expect("load_sale.lua");
    assert_eq!(loaded, 1, "sale {sale_id} loaded");
    // Admitted before the sale was loaded, as every order restored is.
    let admitted_ms = now_ms - 60_000;
    let mut page: Vec<String> = vec![String::new(), "1".to_owned()];
    for (order_id, user_id, units) in open {
        page.extend([
            order_id,
            user_id,
            units.to_string(),
            admitted_ms.to_string(),
            (now_ms + 600_000).to_string(),
            "held".to_owned(),
        ]);
    }
    let holding = page.len() > 2;
    let reply: Vec<String> = Script::from_lua(include_str!("../../../lua/load_holds.lua"))
        .evalsha_with_reload(
            stores.redis.next(),
            vec![keys.sale, keys.orders, keys.holds, keys.buyers],
            page,
        )
        .await
        .expect("load_holds.lua");
    assert_eq!(
        reply[0],
        if holding { "loaded" } else { "done" },
        "{reply:?}"
    );
}

fn keys(stores: &Stores, sale_id: u64) -> SaleKeys {
    SaleKeys::new(&stores.settings.redis.key_prefix, sale_id)
}

/// Redis's `(stock, held, paid)` of a sale.
async fn counters(stores: &Stores, sale_id: u64) -> (i64, i64, i64) {
    let keys = keys(stores, sale_id);
    let stock: i64 = stores.redis.get(&keys.stock).await.expect("get stock");
    let fields: Vec<Option<i64>> = stores
        .redis
        .hmget(&keys.sale, vec!["held", "paid"])
        .await
        .expect("hmget");
    (stock, fields[0].unwrap_or(0), fields[1].unwrap_or(0))
}

/// Adds `by` to a sale's `stock` string.
async fn bump_stock(stores: &Stores, sale_id: u64, by: i64) {
    let _: i64 = stores
        .redis
        .incr_by(keys(stores, sale_id).stock, by)
        .await
        .expect("incrby");
}

/// Adds `by` to a field (`held`, `paid`) of a sale's hash.
async fn bump_field(stores: &Stores, sale_id: u64, field: &str, by: i64) {
    let _: i64 = stores
        .redis
        .hincrby(keys(stores, sale_id).sale, field, by)
        .await
        .expect("hincrby");
}

/// `flashgate-batch reconcile-stock <args>` on the test's stores, not yet waited for.
fn spawn(stores: &Stores, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flashgate-batch"))
        .arg("reconcile-stock")
        .args(args)
        .env("FLASHGATE__MYSQL__URL", stores.settings.mysql.url.expose())
        .env(
            "FLASHGATE__REDIS__KEY_PREFIX",
            &stores.settings.redis.key_prefix,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flashgate-batch")
}

/// How a run ended: exit code, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(child: Child) -> Self {
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait for flashgate-batch");
        Self {
            code: status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// The JSON summary (for runs with `--json`).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }

    /// The output line about `sale_id`, if any.
    fn line_of(&self, sale_id: u64) -> Option<&str> {
        let prefix = format!("sale {sale_id}: ");
        self.stdout.lines().find(|line| line.starts_with(&prefix))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn reconcile_stock(stores: &Stores, args: &[&str]) -> Run {
    Run::of(spawn(stores, args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_whose_redis_counters_match_mysql_after_the_drain_exit_0() {
    let stores = stores().await;
    let fresh = sale(&stores, 10, &[]).await;
    let busy = sale(
        &stores,
        100,
        &[
            ("confirmed", 3),
            ("paid", 2),
            ("cancelled", 4),
            ("expired", 1),
            ("rejected", 5),
            ("confirmed", 1),
        ],
    )
    .await;
    load(&stores, fresh).await;
    load(&stores, busy).await;

    let run = reconcile_stock(&stores, &["--json"]);

    assert_eq!(run.code, 0, "{run}");
    let report = run.json();
    assert_eq!(report["sales_checked"], 2, "{run}");
    assert_eq!(report["clean"], 2, "{run}");
    assert_eq!(report["findings"], Value::Array(Vec::new()), "{run}");
    assert_eq!(counters(&stores, busy).await, (94, 4, 2));
    stores.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_stock_held_or_paid_exits_2_naming_each_sale_and_fix_repairs_it_so_the_next_run_is_clean()
 {
    // Arrange: four sales as the drain leaves them; then one counter of three of them wrong.
    let stores = stores().await;
    let orders = [("confirmed", 2), ("paid", 3), ("cancelled", 1)];
    let stock_off = sale(&stores, 20, &orders).await;
    let held_off = sale(&stores, 20, &orders).await;
    let paid_off = sale(&stores, 20, &orders).await;
    let clean = sale(&stores, 20, &orders).await;
    for sale_id in [stock_off, held_off, paid_off, clean] {
        load(&stores, sale_id).await;
    }
    // A unit given back twice, a hold never released, a payment counted twice.
    bump_stock(&stores, stock_off, 1).await;
    bump_field(&stores, held_off, "held", 1).await;
    bump_field(&stores, paid_off, "paid", 1).await;

    // Act
    let checked = reconcile_stock(&stores, &[]);
    let untouched = counters(&stores, stock_off).await;
    let one_clean_sale = reconcile_stock(&stores, &["--sale", &clean.to_string()]);
    let fixed = reconcile_stock(&stores, &["--fix", "--json"]);
    let again = reconcile_stock(&stores, &[]);

    // Assert: each drifting sale named with its counter and the truth; fixed; clean after.
    assert_eq!(checked.code, 2, "{checked}");
    for (sale_id, what) in [
        (stock_off, "stock 16 (MySQL says 15)"),
        (held_off, "held 3 (MySQL says 2)"),
        (paid_off, "paid 4 (MySQL says 3)"),
    ] {
        let line = checked
            .line_of(sale_id)
            .unwrap_or_else(|| panic!("no line for sale {sale_id}: {checked}"));
        assert!(line.contains("DRIFT") && line.contains(what), "{line}");
        assert!(line.contains("not repaired (run with --fix)"), "{line}");
    }
    assert_eq!(checked.line_of(clean), None, "{checked}");
    assert!(
        checked
            .stdout
            .contains("4 sale(s) checked: 1 clean, 3 drifting"),
        "{checked}"
    );
    assert_eq!(untouched, (16, 2, 3), "a run without --fix changes nothing");
    assert_eq!(one_clean_sale.code, 0, "{one_clean_sale}");
    assert!(
        one_clean_sale.stdout.contains("1 sale(s) checked: 1 clean"),
        "{one_clean_sale}"
    );
    assert_eq!(fixed.code, 2, "drift found, even if fixed: {fixed}");
    let report = fixed.json();
    assert_eq!(report["drifting"], 3, "{fixed}");
    assert_eq!(report["repaired"], 3, "{fixed}");
    assert_eq!(report["findings"][0]["outcome"], "repaired", "{fixed}");
    assert_eq!(report["findings"][0]["before"]["stock"], 16, "{fixed}");
    assert_eq!(report["findings"][0]["after"]["stock"], 15, "{fixed}");
    assert!(
        fixed.stderr.contains("stock counters repaired from MySQL"),
        "each repair is logged: {fixed}"
    );
    for sale_id in [stock_off, held_off, paid_off, clean] {
        assert_eq!(
            counters(&stores, sale_id).await,
            (15, 2, 3),
            "sale {sale_id}"
        );
    }
    assert_eq!(again.code, 0, "{again}");
    stores.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_output_flags_each_drifting_sale_with_its_difference_for_the_drift_alert() {
    // Arrange: two sales as the drain leaves them, one with a unit given back twice.
    let stores = stores().await;
    let orders = [("confirmed", 2), ("paid", 3)];
    let drifting = sale(&stores, 20, &orders).await;
    let clean = sale(&stores, 20, &orders).await;
    load(&stores, drifting).await;
    load(&stores, clean).await;
    bump_stock(&stores, drifting, 1).await;

    // Act
    let run = reconcile_stock(&stores, &["--prometheus"]);

    // Assert: what FlashgateStockDrift (ops/prometheus/rules) alerts on, and the exit code.
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stdout.contains(&format!(
            "flashgate_stock_drifting_sale{{sale_id=\"{drifting}\",outcome=\"reported\"}} 1\n"
        )),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!(
            "flashgate_stock_drift_units{{sale_id=\"{drifting}\",counter=\"stock\"}} 1\n"
        )),
        "{run}"
    );
    assert!(
        !run.stdout.contains(&format!("sale_id=\"{clean}\"")),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("flashgate_stock_reconcile_sales{result=\"drifting\"} 1\n"),
        "{run}"
    );
    stores.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_changes_between_the_check_and_the_repair_is_not_overwritten() {
    // Arrange: a sale whose stock is one unit high.
    let stores = stores().await;
    let sale_id = sale(&stores, 10, &[("confirmed", 2)]).await;
    load(&stores, sale_id).await;
    bump_stock(&stores, sale_id, 1).await;
    let hook: PathBuf = std::env::temp_dir().join(unique("fgtest-stock-hook-"));

    // Act: the run stops before its repair; meanwhile a shopper's purchase takes a unit (stock
    // down, held up, as purchase.lua does); then the run goes on.
    let child = fix_paused_before_repair(&stores, &hook).await;
    bump_stock(&stores, sale_id, -1).await;
    bump_field(&stores, sale_id, "held", 1).await;
    std::fs::remove_file(&hook).expect("release the run");
    let raced = Run::of(child);
    let after = counters(&stores, sale_id).await;
    let next = reconcile_stock(&stores, &[]);

    // Assert: the purchase's counters stand; the run said so; the next run still sees drift.
    assert_eq!(raced.code, 2, "{raced}");
    let line = raced.line_of(sale_id).expect("a line for the sale");
    assert!(line.contains("CHANGED WHILE READING"), "{line}");
    assert_eq!(after, (8, 3, 0), "the purchase's counters were kept");
    assert_eq!(next.code, 2, "{next}");
    stores.clean_up().await;
}

/// Starts `--fix` with the test hook and returns once the run waits before its repair.
async fn fix_paused_before_repair(stores: &Stores, hook: &std::path::Path) -> Child {
    let child = spawn(
        stores,
        &[
            "--fix",
            "--pause-before-repair",
            hook.to_str().expect("utf-8"),
        ],
    );
    let until = Instant::now() + Duration::from_secs(30);
    while !hook.exists() {
        assert!(Instant::now() < until, "the run never reached its repair");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_persister_stores_between_the_check_and_the_repair_leaves_redis_alone() {
    // Arrange: Redis admitted an order (stock down, held up) and relayed it (outbox empty),
    // but the persister has not stored it yet: MySQL lags behind, Redis is right.
    let stores = stores().await;
    let sale_id = sale(&stores, 10, &[]).await;
    load(&stores, sale_id).await;
    bump_stock(&stores, sale_id, -1).await;
    bump_field(&stores, sale_id, "held", 1).await;
    let hook: PathBuf = std::env::temp_dir().join(unique("fgtest-stock-hook-"));

    // Act: while the run waits before its repair, the persister stores the order.
    let child = fix_paused_before_repair(&stores, &hook).await;
    sqlx::query(
        "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, status, \
         admitted_at) VALUES ('late', ?, 'u', 1, 500, 500, 'confirmed', NOW(3))",
    )
    .bind(sale_id)
    .execute(&stores.db)
    .await
    .expect("insert order");
    sqlx::query("UPDATE sales SET sold = sold + 1 WHERE sale_id = ?")
        .bind(sale_id)
        .execute(&stores.db)
        .await
        .expect("update sold");
    std::fs::remove_file(&hook).expect("release the run");
    let raced = Run::of(child);
    let next = reconcile_stock(&stores, &[]);

    // Assert: Redis's counters were not "repaired" back to what MySQL said before.
    assert_eq!(raced.code, 2, "{raced}");
    let line = raced.line_of(sale_id).expect("a line for the sale");
    assert!(line.contains("CHANGED WHILE READING"), "{line}");
    assert_eq!(counters(&stores, sale_id).await, (9, 1, 0));
    assert_eq!(next.code, 0, "{next}");
    stores.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_mysql_rejected_that_redis_still_holds_is_not_repaired_by_setting_counters() {
    // Arrange: Redis admitted an order (after a failover lost writes) that MySQL's guard
    // rejected; Redis holds it, with its record, until its pay_by, then gives its unit back.
    let stores = stores().await;
    let sale_id = sale(&stores, 10, &[("confirmed", 2), ("rejected", 1)]).await;
    load(&stores, sale_id).await;
    let keys = keys(&stores, sale_id);
    let pay_by = chrono::Utc::now().timestamp_millis() + 600_000;
    let _: i64 = stores
        .redis
        .hset(
            &keys.orders,
            ("o-rejected", format!("u9\n1\n0\n{pay_by}\nheld\n\n")),
        )
        .await
        .expect("record");
    let _: i64 = stores
        .redis
        .zadd(
            &keys.holds,
            None,
            None,
            false,
            false,
            (pay_by as f64, "o-rejected"),
        )
        .await
        .expect("zadd");
    bump_stock(&stores, sale_id, -1).await;
    bump_field(&stores, sale_id, "held", 1).await;

    // Act
    let run = reconcile_stock(&stores, &["--fix"]);

    // Assert: a held of 2 would go to -1 when the order expires and gives its unit back.
    assert_eq!(run.code, 2, "{run}");
    let line = run.line_of(sale_id).expect("a line for the sale");
    assert!(
        line.contains("held 3 (MySQL says 2)")
            && line.contains(
                "NOT REPAIRABLE: Redis's open orders hold 3 unit(s), MySQL's confirmed orders 2"
            ),
        "{line}"
    );
    assert_eq!(counters(&stores, sale_id).await, (7, 3, 0), "left alone");
    stores.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_not_in_redis_is_skipped_and_counted_not_reported_as_drift() {
    let stores = stores().await;
    let cleaned_up = sale(&stores, 10, &[("paid", 4), ("expired", 6)]).await;
    let loaded = sale(&stores, 10, &[("confirmed", 1)]).await;
    load(&stores, loaded).await;

    let run = reconcile_stock(&stores, &["--json", "--fix"]);

    assert_eq!(run.code, 0, "{run}");
    let report = run.json();
    assert_eq!(report["sales_checked"], 2, "{run}");
    assert_eq!(report["not_in_redis"], 1, "{run}");
    assert_eq!(report["clean"], 1, "{run}");
    let exists: i64 = stores
        .redis
        .exists(vec![
            keys(&stores, cleaned_up).sale,
            keys(&stores, cleaned_up).stock,
        ])
        .await
        .expect("exists");
    assert_eq!(exists, 0, "--fix did not bring the sale back");
    stores.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_whose_outbox_is_not_empty_is_reported_not_drained_and_left_alone() {
    // Arrange: an admission Redis made (stock down, held up) that is still in the outbox, so
    // MySQL has not seen it.
    let stores = stores().await;
    let sale_id = sale(&stores, 10, &[]).await;
    load(&stores, sale_id).await;
    bump_stock(&stores, sale_id, -1).await;
    bump_field(&stores, sale_id, "held", 1).await;
    let _: String = stores
        .redis
        .xadd(
            keys(&stores, sale_id).outbox,
            false,
            None,
            "*",
            vec![("order_id", "o-1"), ("quantity", "1")],
        )
        .await
        .expect("xadd");

    let run = reconcile_stock(&stores, &["--fix", "--settle-ms", "300"]);

    assert_eq!(run.code, 2, "{run}");
    let line = run.line_of(sale_id).expect("a line for the sale");
    assert!(
        line.contains("NOT DRAINED") && line.contains("outbox still holds 1 event"),
        "{line}"
    );
    assert_eq!(counters(&stores, sale_id).await, (9, 1, 0), "not repaired");
    stores.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sold_that_disagrees_with_its_orders_is_drift_no_repair_can_settle() {
    let stores = stores().await;
    let sale_id = sale(&stores, 10, &[("confirmed", 2), ("paid", 1)]).await;
    load(&stores, sale_id).await;
    sqlx::query("UPDATE sales SET sold = sold + 1 WHERE sale_id = ?")
        .bind(sale_id)
        .execute(&stores.db)
        .await
        .expect("update");

    let run = reconcile_stock(&stores, &["--fix"]);

    assert_eq!(run.code, 2, "{run}");
    let line = run.line_of(sale_id).expect("a line for the sale");
    assert!(
        line.contains("NOT REPAIRABLE: MySQL sold 4 is not the 3 unit(s)"),
        "{line}"
    );
    assert_eq!(counters(&stores, sale_id).await, (7, 2, 1), "left alone");
    stores.clean_up().await;
}
