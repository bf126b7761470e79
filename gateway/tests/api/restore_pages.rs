//! A sale Redis lost with more orders than fit in one script call comes back with every open
//! order held again and every buyer counted, loaded a page at a time (`lua/load_holds.lua`):
//! all of them, each once, with its pay_by; the sale takes no purchase until they are in; a
//! restore cut short resumes where it stopped; a second restore and a late page change
//! nothing; an order Redis has a record of, or admitted after the sale came back, is left alone.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use flashgate_gateway::auth::Role;
use flashgate_gateway::keys::SaleKeys;
use flashgate_gateway::sales::state::{self, HOLDS_PAGE, PageLoaded};
use flashgate_gateway::sales::store;
use flashgate_gateway::scripts::Scripts;
use fred::prelude::{HashesInterface, KeysInterface, SortedSetsInterface};
use http::{Method, StatusCode};
use serde_json::json;
use sqlx::QueryBuilder;

use crate::helpers::{Reply, TestApp, sale_counters, shopper_counts, spawn_app};

/// An open order as the test put it into MySQL.
struct Open {
    user: String,
    units: i64,
    pay_by_ms: i64,
}

/// A sale Redis lost, as MySQL holds it.
struct LostSale {
    sale_id: u64,
    /// Open (`confirmed`) orders by id.
    open: HashMap<String, Open>,
    /// Every buyer's units in open and paid orders.
    buyers: HashMap<String, i64>,
    /// When every order was admitted, ms.
    admitted_ms: i64,
    total: i64,
    sold: i64,
    paid: i64,
}

impl LostSale {
    fn held(&self) -> i64 {
        self.open.values().map(|o| o.units).sum()
    }
}

async fn restore(app: &TestApp) -> Reply {
    let token = app.token("manager-1", Role::Manager);
    app.request(
        Method::POST,
        "/v1/admin/sales/restore",
        Some(&token),
        &[],
        None,
    )
    .await
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Inserts orders `<sale>-<n>` for `range` straight into MySQL (as the persister stores them),
/// 500 rows a statement; `units(n)` and `pay_by(n)` say each one's units and pay_by.
async fn insert_orders(
    app: &TestApp,
    sale_id: u64,
    range: std::ops::Range<u32>,
    status: &str,
    admitted: DateTime<Utc>,
    units: impl Fn(u32) -> i64,
    pay_by: impl Fn(u32) -> DateTime<Utc>,
) {
    let numbers: Vec<u32> = range.collect();
    for chunk in numbers.chunks(500) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO orders (sale_id, order_id, user_id, quantity, unit_price, amount, \
             status, admitted_at, pay_by) ",
        );
        insert.push_values(chunk, |mut row, &n| {
            row.push_bind(sale_id)
                .push_bind(format!("{sale_id}-{n}"))
                .push_bind(format!("u{n}"))
                .push_bind(units(n))
                .push_bind(1999_i64)
                .push_bind(units(n) * 1999)
                .push_bind(status)
                .push_bind(admitted.naive_utc())
                .push_bind(pay_by(n).naive_utc());
        });
        insert
            .build()
            .execute(&app.db)
            .await
            .expect("insert orders");
    }
}

/// A sale with `open` open orders of 1 or 2 units (each by its own user, each with its own
/// pay_by) and 5 paid ones, stored in MySQL as the persister stores them; then Redis loses
/// the sale (a restart without data, a failover that lost it).
async fn lost_sale(app: &TestApp, open: u32) -> LostSale {
    let total = i64::from(open) * 2 + 100;
    let sale_id = app
        .sale(json!({ "stock": total, "per_user_limit": 2 }))
        .await;
    // Milliseconds only: MySQL keeps DATETIME(3).
    let admitted =
        DateTime::from_timestamp_millis(ms(Utc::now() - Duration::minutes(1))).expect("admitted");
    let units = |n: u32| i64::from(n % 2) + 1;
    let pay_by = |n: u32| admitted + Duration::minutes(10) + Duration::milliseconds(i64::from(n));
    insert_orders(app, sale_id, 0..open, "confirmed", admitted, units, pay_by).await;
    insert_orders(
        app,
        sale_id,
        open..open + 5,
        "paid",
        admitted,
        |_| 1,
        pay_by,
    )
    .await;
    let held: i64 = (0..open).map(units).sum();
    let (sold, paid) = (held + 5, 5);
    sqlx::query("UPDATE sales SET sold = ? WHERE sale_id = ?")
        .bind(sold)
        .bind(sale_id)
        .execute(&app.db)
        .await
        .expect("sold");
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    for key in [
        &keys.sale,
        &keys.stock,
        &keys.buyers,
        &keys.orders,
        &keys.holds,
    ] {
        let _: i64 = app.redis.del(key).await.expect("DEL");
    }
    let buyers = (0..open)
        .map(|n| (format!("u{n}"), units(n)))
        .chain((open..open + 5).map(|n| (format!("u{n}"), 1)))
        .collect();
    LostSale {
        sale_id,
        buyers,
        open: (0..open)
            .map(|n| {
                (
                    format!("{sale_id}-{n}"),
                    Open {
                        user: format!("u{n}"),
                        units: units(n),
                        pay_by_ms: ms(pay_by(n)),
                    },
                )
            })
            .collect(),
        admitted_ms: ms(admitted),
        total,
        sold,
        paid,
    }
}

/// Everything Redis holds of the sale's orders and counters: holds (order → pay_by), records,
/// buyers, and the sale hash.
#[derive(Debug, PartialEq)]
struct Held {
    holds: HashMap<String, i64>,
    records: HashMap<String, String>,
    buyers: HashMap<String, i64>,
    sale: HashMap<String, String>,
}

async fn held(app: &TestApp, sale_id: u64) -> Held {
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale_id);
    let holds: Vec<(String, f64)> = app
        .redis
        .zrange(&keys.holds, 0, -1, None, false, None, true)
        .await
        .expect("ZRANGE");
    #[allow(clippy::cast_possible_truncation)]
    let holds = holds.into_iter().map(|(o, s)| (o, s as i64)).collect();
    Held {
        holds,
        records: app.redis.hgetall(&keys.orders).await.expect("orders"),
        buyers: shopper_counts(app, &keys.buyers).await,
        sale: app.redis.hgetall(&keys.sale).await.expect("sale"),
    }
}

/// The record purchase.lua would have written for the order.
fn record(order: &Open, admitted_ms: i64) -> String {
    format!(
        "{}\n{}\n{admitted_ms}\n{}\nheld\n\n",
        order.user, order.units, order.pay_by_ms
    )
}

/// Every open order of `sale` but `except` is held until its pay_by with its record; no
/// other order is held; loading is over and the sale open again.
fn assert_every_open_order_held(sale: &LostSale, now: &Held, except: &[&str]) {
    let expected: HashMap<String, i64> = sale
        .open
        .iter()
        .filter(|(id, _)| !except.contains(&id.as_str()))
        .map(|(id, o)| (id.clone(), o.pay_by_ms))
        .collect();
    assert_eq!(now.holds.len(), expected.len(), "one hold per open order");
    assert!(
        now.holds == expected,
        "every open order held until its pay_by"
    );
    for (id, order) in &sale.open {
        if !except.contains(&id.as_str()) {
            assert_eq!(
                now.records.get(id),
                Some(&record(order, sale.admitted_ms)),
                "{id}"
            );
        }
    }
    for field in [
        "holds_loading",
        "holds_after",
        "buyers_loading",
        "loading_status",
    ] {
        assert!(
            !now.sale.contains_key(field),
            "{field} left: {:?}",
            now.sale
        );
    }
    assert_eq!(now.sale["status"], "active", "open again");
}

/// The buyers of `sale` but the users of `except`, with their units.
fn buyers_but(sale: &LostSale, except: &[&str]) -> HashMap<String, i64> {
    let mut buyers = sale.buyers.clone();
    for user in except {
        buyers.remove(*user);
    }
    buyers
}

async fn cancel(app: &TestApp, order_id: &str, user: &str) -> Reply {
    let token = app.token(user, Role::Shopper);
    app.request(
        Method::POST,
        &format!("/v1/orders/{order_id}/cancel"),
        Some(&token),
        &[],
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_with_more_orders_than_two_pages_comes_back_with_every_open_order_held_until_its_pay_by_and_every_buyer_counted()
 {
    let app = spawn_app().await;
    let sale = lost_sale(&app, 2 * HOLDS_PAGE + 500).await;

    let reply = restore(&app).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["restored"], 1, "{}", reply.json);

    let now = held(&app, sale.sale_id).await;
    assert_every_open_order_held(&sale, &now, &[]);
    assert_eq!(
        now.records.len(),
        sale.open.len(),
        "one record per open order"
    );
    assert_eq!(
        sale_counters(&app, sale.sale_id).await,
        (sale.total - sale.sold, sale.held(), sale.paid, sale.total),
        "stock + held + paid = total, held = the open orders' units"
    );
    assert!(now.buyers == sale.buyers, "every buyer counted once");

    // A second restore finds the sale whole and changes nothing.
    let again = restore(&app).await;
    assert_eq!(again.json["restored"], 0, "{}", again.json);
    assert_eq!(held(&app, sale.sale_id).await, now);

    // The sale sells again, within the per-user limit its buyers' counts set.
    let full = app.purchase(sale.sale_id, "u1", 1).await;
    assert_eq!(full.code(), "limit_exceeded", "u1 has 2: {}", full.json);
    let bought = app.purchase(sale.sale_id, "u0", 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.json);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_cut_short_after_its_first_page_resumes_where_it_stopped_and_loads_every_order_once()
 {
    let app = spawn_app().await;
    let sale = lost_sale(&app, 2 * HOLDS_PAGE + 500).await;
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale.sale_id);
    let scripts = Scripts::new();
    let row = store::find(&app.db, sale.sale_id)
        .await
        .expect("find")
        .expect("sale");

    // A gateway loads the sale and its first page of orders, then dies.
    state::load_stopping_after(
        &app.redis,
        &app.db,
        &scripts,
        &app.settings.redis.key_prefix,
        &row,
        Some(1),
    )
    .await
    .expect("first page");
    let first_page = store::orders_after(&app.db, &row, "", true, HOLDS_PAGE)
        .await
        .expect("first page")
        .orders;
    let first_last = first_page.last().expect("a page").order_id.clone();
    let cut = held(&app, sale.sale_id).await;
    let open_in_first = first_page.iter().filter(|o| !o.paid).count();
    assert_eq!(cut.holds.len(), open_in_first, "the first page is held");
    assert_eq!(cut.buyers.len(), first_page.len(), "its buyers counted");
    assert_eq!(cut.sale["holds_loading"], "1");
    assert_eq!(cut.sale["holds_after"], first_last);
    assert_eq!(
        sale_counters(&app, sale.sale_id).await,
        (sale.total - sale.sold, sale.held(), sale.paid, sale.total),
        "the counters are whole from the start"
    );

    // Meanwhile the sale takes no purchase (its buyers are not all counted yet); an order of
    // the first page can be cancelled (its units come back); one of a page not loaded yet
    // cannot be reached: 503, retry shortly.
    assert!(!cut.sale.contains_key("status"), "{:?}", cut.sale);
    let refused = app.purchase(sale.sale_id, "newcomer", 1).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.json);
    let cancelled = first_page.iter().find(|o| !o.paid).expect("an open order");
    let later = sale
        .open
        .keys()
        .find(|id| !cut.holds.contains_key(*id))
        .expect("an order not loaded yet")
        .clone();
    let later_user = sale.open[&later].user.clone();
    let reply = cancel(&app, &cancelled.order_id, &cancelled.user_id).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["status"], "cancelled");
    let reply = cancel(&app, &later, &later_user).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.json
    );
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the order's hold cannot be reached right now"),
        "{}",
        reply.json
    );

    // The dead gateway's first page, re-sent (its reply was lost), is not taken again.
    let resent = state::load_page(
        &app.redis,
        &scripts.load_holds,
        &keys,
        "",
        &first_page,
        false,
    )
    .await
    .expect("re-sent page");
    assert_eq!(resent, PageLoaded::Moved(first_last.clone()));

    // The next restore goes on from the second page.
    let reply = restore(&app).await;
    assert_eq!(reply.json["restored"], 1, "{}", reply.json);
    let now = held(&app, sale.sale_id).await;
    assert_every_open_order_held(&sale, &now, &[&cancelled.order_id]);
    assert!(
        now.records[&cancelled.order_id].contains("\ncancelled\n"),
        "the cancelled order stays cancelled: {}",
        now.records[&cancelled.order_id]
    );
    assert!(
        now.buyers == buyers_but(&sale, &[&cancelled.user_id]),
        "every buyer counted once; the cancelled order's buyer has nothing left"
    );
    let units = sale.open[&cancelled.order_id].units;
    assert_eq!(
        sale_counters(&app, sale.sale_id).await,
        (
            sale.total - sale.sold + units,
            sale.held() - units,
            sale.paid,
            sale.total
        ),
        "its units came back once"
    );

    // The order that could not be reached can be cancelled now, and the sale sells again.
    let reply = cancel(&app, &later, &later_user).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let bought = app.purchase(sale.sale_id, "newcomer", 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.json);

    // A late page (a slow gateway) after the last one changes nothing.
    let before = held(&app, sale.sale_id).await;
    let late = state::load_page(
        &app.redis,
        &scripts.load_holds,
        &keys,
        "",
        &first_page,
        false,
    )
    .await
    .expect("late page");
    assert_eq!(late, PageLoaded::Done);
    assert_eq!(held(&app, sale.sale_id).await, before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_leaves_alone_an_order_redis_has_a_record_of_or_admitted_after_the_sale_came_back()
 {
    let app = spawn_app().await;
    let sale = lost_sale(&app, 3).await;
    let keys = SaleKeys::new(&app.settings.redis.key_prefix, sale.sale_id);
    let row = store::find(&app.db, sale.sale_id)
        .await
        .expect("find")
        .expect("sale");
    // The sale comes back; a gateway dies before loading any page of its orders.
    state::load_stopping_after(
        &app.redis,
        &app.db,
        &Scripts::new(),
        &app.settings.redis.key_prefix,
        &row,
        Some(0),
    )
    .await
    .expect("sale loaded");
    // An order admitted after that (purchase.lua held and counted it: a manager had set the
    // status meanwhile) ended and Redis forgot it while MySQL still read it open: the next
    // page must not hold or count it again.
    let admitted = Utc::now() + Duration::seconds(1);
    insert_orders(
        &app,
        sale.sale_id,
        900..901,
        "confirmed",
        admitted,
        |_| 1,
        |_| admitted + Duration::minutes(10),
    )
    .await;
    // An order Redis still has a record of (here: ended) keeps it, and gets no hold.
    let ended = format!("{}-1", sale.sale_id);
    let ended_record = format!(
        "u1\n2\n{}\n{}\ncancelled\n{}\ncancelled_by_shopper",
        sale.admitted_ms,
        sale.open[&ended].pay_by_ms,
        sale.admitted_ms + 1
    );
    let _: i64 = app
        .redis
        .hset(&keys.orders, (ended.as_str(), ended_record.as_str()))
        .await
        .expect("HSET");

    let reply = restore(&app).await;
    assert_eq!(reply.json["restored"], 1, "{}", reply.json);
    let now = held(&app, sale.sale_id).await;
    assert_every_open_order_held(&sale, &now, &[&ended]);
    assert_eq!(
        now.records[&ended], ended_record,
        "its record is left as it was"
    );
    assert!(
        !now.records.contains_key(&format!("{}-900", sale.sale_id)),
        "{:?}",
        now.records
    );
    assert!(
        now.buyers == sale.buyers,
        "the late order not counted: {:?}",
        now.buyers
    );
    assert_eq!(
        sale_counters(&app, sale.sale_id).await,
        (sale.total - sale.sold, sale.held(), sale.paid, sale.total)
    );
    app.stop().await;
}
