//! Points in the persister: earned by paid orders, uses and refunds from the points topic,
//! each written once whatever the replays, and the Redis caches settled by version in any
//! order.

use std::collections::HashMap;

use chrono::Utc;
use flashgate_events::keys::PointsKeys;
use flashgate_events::{Envelope, POINTS_REFUNDED, POINTS_USED, PointsRefunded, PointsUsed};
use flashgate_persister::points::{PointCaches, Settle};
use fred::prelude::{HashesInterface, KeysInterface, Pool};
use fred::types::scripts::Script;

use crate::lifecycle::{paid, send_end};
use crate::persisting::{Running, order, read_topic, start};

pub async fn give(running: &Running, user: &str, points: i64) {
    sqlx::query(
        "INSERT INTO point_ledger (txid, user_id, delta, reason) VALUES (?, ?, ?, 'adjust')",
    )
    .bind(format!("adjust-{user}"))
    .bind(user)
    .bind(points)
    .execute(&running.db)
    .await
    .expect("ledger");
    sqlx::query("INSERT INTO point_balances (user_id, balance, version) VALUES (?, ?, 1)")
        .bind(user)
        .bind(points)
        .execute(&running.db)
        .await
        .expect("balance");
}

pub async fn send_use(running: &Running, user: &str, txid: &str, amount: u64) {
    let data = PointsUsed {
        txid: txid.to_owned(),
        user_id: user.to_owned(),
        amount,
        order_id: "1-order".to_owned(),
        at: Utc::now(),
    };
    let envelope = Envelope::v1(POINTS_USED, txid.to_owned(), Utc::now(), "t".into(), data);
    let topic = running.settings.kafka.points_topic.clone();
    running
        .send_to(&topic, user, &serde_json::to_vec(&envelope).expect("json"))
        .await;
}

pub async fn send_refund(running: &Running, user: &str, use_txid: &str, amount: u64) {
    let txid = flashgate_events::refund_txid(use_txid).expect("a use txid");
    let data = PointsRefunded {
        txid: txid.clone(),
        use_txid: use_txid.to_owned(),
        user_id: user.to_owned(),
        amount,
        at: Utc::now(),
    };
    let envelope = Envelope::v1(POINTS_REFUNDED, txid, Utc::now(), "t".into(), data);
    let topic = running.settings.kafka.points_topic.clone();
    running
        .send_to(&topic, user, &serde_json::to_vec(&envelope).expect("json"))
        .await;
}

pub async fn balance_row(running: &Running, user: &str) -> (i64, u64) {
    sqlx::query_as("SELECT balance, version FROM point_balances WHERE user_id = ?")
        .bind(user)
        .fetch_one(&running.db)
        .await
        .expect("balance row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_orders_earn_once_and_replays_earn_nothing() {
    let running = start().await;
    let sale_id = running.sale(2).await;
    // Three 1-unit orders at 500 for two units of stock: two confirmed, one rejected.
    let orders: Vec<_> = (0..3).map(|n| order(sale_id, n, 1)).collect();
    for order in &orders {
        running.send(order).await;
    }
    let sql = "SELECT COUNT(*) FROM orders".to_owned();
    assert_eq!(running.wait_count(&sql, 3).await, 3);
    // An order earns when it is paid: all three are (the rejected one's payment is stale).
    let payments: Vec<_> = orders.iter().map(paid).collect();
    for payment in &payments {
        send_end(&running, payment).await;
    }
    // 1 % of 500 is 5 points, for the two confirmed orders only.
    let earned = "SELECT COUNT(*) FROM point_ledger WHERE reason = 'earn' AND delta = 5";
    assert_eq!(running.wait_count(earned, 2).await, 2);
    for (order, payment) in orders.iter().zip(&payments) {
        running.send(order).await;
        send_end(&running, payment).await;
    }
    // Markers after the replays, on both partitions (keys spread them): once all are stored,
    // the replays before them have been consumed.
    for n in 100..108 {
        running.send(&order(sale_id, n, 1)).await;
    }
    assert_eq!(
        running.wait_count(&sql, 11).await,
        11,
        "the replays went through first"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM point_ledger")
        .fetch_one(&running.db)
        .await
        .expect("count");
    assert_eq!(rows, 2, "replayed orders and payments earn nothing more");
    let total: i64 = sqlx::query_scalar("SELECT CAST(SUM(balance) AS SIGNED) FROM point_balances")
        .fetch_one(&running.db)
        .await
        .expect("sum");
    assert_eq!(total, 10);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uses_and_refunds_are_written_once_and_an_unpayable_use_is_refused() {
    let running = start().await;
    give(&running, "alice", 100).await;
    for _ in 0..2 {
        send_use(&running, "alice", "use-a1", 60).await;
        send_refund(&running, "alice", "use-a1", 60).await;
    }
    send_use(&running, "alice", "use-a2", 70).await;
    send_use(&running, "alice", "use-a3", 50).await; // 100 - 70 leaves 30: refused
    send_refund(&running, "alice", "use-a3", 50).await; // gives back nothing
    let ledger = "SELECT COUNT(*) FROM point_ledger WHERE user_id = 'alice'";
    assert_eq!(
        running.wait_count(ledger, 6).await,
        6,
        "adjust, use, refund, use, 2 refused"
    );
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT txid, delta, reason FROM point_ledger WHERE user_id = 'alice' ORDER BY entry_id",
    )
    .fetch_all(&running.db)
    .await
    .expect("ledger");
    let rows: Vec<(&str, i64, &str)> = rows
        .iter()
        .map(|(t, d, r)| (t.as_str(), *d, r.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("adjust-alice", 100, "adjust"),
            ("use-a1", -60, "use"),
            ("refund-a1", 60, "refund"),
            ("use-a2", -70, "use"),
            ("use-a3", 0, "rejected"),
            ("refund-a3", 0, "rejected"),
        ]
    );
    assert_eq!(balance_row(&running, "alice").await.0, 30);
    let settings = running.settings.clone();
    let topic = settings.kafka.compensations_topic.clone();
    let announced = tokio::task::spawn_blocking(move || read_topic(&settings, &topic, 2))
        .await
        .expect("reader");
    assert_eq!(announced.len(), 2, "both refusals announced: {announced:?}");
    assert!(announced.iter().all(|(key, _)| key == "alice"));
    running.stop().await;
}

/// A cache hash, as a map.
pub async fn cache(redis: &Pool, key: &str) -> HashMap<String, String> {
    redis.next().hgetall(key).await.expect("HGETALL")
}

pub fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn settle(user: &str, from: u64, to: u64, balance: i64, txids: &[&str]) -> Settle {
    Settle {
        user_id: user.to_owned(),
        from,
        to,
        balance,
        txids: txids.iter().map(|t| (*t).to_owned()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_in_any_order_never_leave_a_wrong_cache() {
    let settings = crate::helpers::isolated().await.0;
    let redis = settings.redis.connect_pool().await.expect("Redis");
    let prefix = settings.redis.key_prefix.clone();
    let caches = PointCaches::new(redis.clone(), &prefix);
    let key = PointsKeys::for_user(&prefix, "bob").balance("bob");

    // A use of 30 is pending on a cache of version 1 (MySQL 100): spendable 70.
    let _: () = redis
        .next()
        .hset(
            &key,
            fields(&[
                ("balance", "70"),
                ("version", "1"),
                ("pending", "30"),
                ("tx:use-b1", "30"),
            ]),
        )
        .await
        .expect("HSET");
    // Its commit (1 → 2, MySQL 70) settles it; replaying that settle changes nothing.
    for _ in 0..2 {
        caches
            .settle(&[settle("bob", 1, 2, 70, &["use-b1"])])
            .await
            .expect("settle");
        assert_eq!(
            cache(&redis, &key).await,
            fields(&[("balance", "70"), ("version", "2"), ("pending", "0")])
        );
    }

    // Two commits arrive out of order (another consumer's earn 2 → 3 is late): the later one
    // drops the cache and leaves a floor; the late one then finds no cache.
    caches
        .settle(&[settle("bob", 3, 4, 95, &[])])
        .await
        .expect("settle");
    assert_eq!(
        cache(&redis, &key).await,
        fields(&[("pending", "0"), ("floor", "4")])
    );
    caches
        .settle(&[settle("bob", 2, 3, 90, &[])])
        .await
        .expect("settle");
    assert_eq!(
        cache(&redis, &key).await,
        fields(&[("pending", "0"), ("floor", "4")])
    );

    // A rebuild from a snapshot older than the floor is refused; a current one is taken.
    let fill = Script::from_lua(include_str!("../../../lua/points_fill.lua"));
    let stale: Vec<String> = fill
        .evalsha_with_reload(redis.next(), vec![key.clone()], vec!["90", "3", "86400"])
        .await
        .expect("fill");
    assert_eq!(stale, ["stale"]);
    let filled: Vec<String> = fill
        .evalsha_with_reload(redis.next(), vec![key.clone()], vec!["95", "4", "86400"])
        .await
        .expect("fill");
    assert_eq!(filled, ["filled", "95"]);
    assert_eq!(
        cache(&redis, &key).await,
        fields(&[("balance", "95"), ("version", "4"), ("pending", "0")])
    );
    let ttl: i64 = redis.next().pttl(&key).await.expect("PTTL");
    assert!(
        (1..=86_400_000).contains(&ttl),
        "a rebuilt cache with nothing pending expires in a day: {ttl}"
    );

    // A refused use (no version change) gives its points back wherever the cache stands.
    let _: () = redis
        .next()
        .hset(
            &key,
            fields(&[("balance", "55"), ("pending", "40"), ("tx:use-b2", "40")]),
        )
        .await
        .expect("HSET");
    caches
        .settle(&[settle("bob", 4, 4, 95, &["use-b2"])])
        .await
        .expect("settle");
    assert_eq!(
        cache(&redis, &key).await,
        fields(&[("balance", "95"), ("version", "4"), ("pending", "0")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_use_is_announced_again_when_its_batch_is_replayed() {
    let running = start().await;
    give(&running, "rory", 10).await;
    send_use(&running, "rory", "use-r1", 50).await; // more than the 10 in MySQL: refused
    let refused = "SELECT COUNT(*) FROM point_ledger WHERE txid = 'use-r1' AND reason = 'rejected'";
    assert_eq!(running.wait_count(refused, 1).await, 1);

    // The batch comes again (a crash before its offsets were committed); then a use that
    // passes, on the same partition, marks that the replay was consumed.
    send_use(&running, "rory", "use-r1", 50).await;
    send_use(&running, "rory", "use-r2", 5).await;
    let marker = "SELECT COUNT(*) FROM point_ledger WHERE txid = 'use-r2'";
    assert_eq!(running.wait_count(marker, 1).await, 1);

    let settings = running.settings.clone();
    let topic = settings.kafka.compensations_topic.clone();
    let announced = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(
            &settings,
            &topic,
            2,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(2),
        )
    })
    .await
    .expect("reader");
    let ids: Vec<String> = announced
        .iter()
        .map(|m| {
            let event: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            assert_eq!(event["type"], "points.rejected");
            assert_eq!(event["data"]["txid"], "use-r1");
            event["event_id"].as_str().expect("event id").to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        ["points.rejected:use-r1", "points.rejected:use-r1"],
        "announced on the first delivery and again on the replay, under one event id"
    );
    let ledger: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM point_ledger WHERE user_id = 'rory'")
            .fetch_one(&running.db)
            .await
            .expect("count");
    assert_eq!(
        ledger, 3,
        "the replay wrote nothing: adjust, refused use, use"
    );
    assert_eq!(balance_row(&running, "rory").await.0, 5);
    running.stop().await;
}
