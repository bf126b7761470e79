//! The dead-letter queue for operators, against the real broker and MariaDB: a poison order
//! dead-lettered, its cause fixed, `dlq replay` persisting it exactly once (a second replay
//! refused, `--again` harmless); `dlq list` filtering by reason and time (through the binary);
//! a batch mixing poison and good messages storing the good ones, parking the bad ones with
//! their reason code, and committing its offsets.

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use flashgate_config::Settings;
use flashgate_persister::dlq::letter::Letter;
use flashgate_persister::dlq::read::{Filter, Reader};
use flashgate_persister::dlq::replay::{Outcome, Replayer};

use crate::helpers::left_for_the_group;
use crate::persisting::{Running, order, prepare, start, wait_for};

/// The letters of the test's dead-letter topic `filter` asks for.
async fn letters(settings: &Settings, filter: Filter) -> Vec<Letter> {
    let kafka = settings.kafka.clone();
    tokio::task::spawn_blocking(move || Reader::new(&kafka)?.letters(&filter))
        .await
        .expect("reader")
        .expect("letters")
}

fn replayer(running: &Running) -> Replayer {
    let producer = running
        .settings
        .kafka
        .producer_config()
        .create()
        .expect("producer");
    Replayer::new(
        running.db.clone(),
        producer,
        running.settings.kafka.dead_letter_topic.clone(),
    )
}

/// Creates sale `sale_id` (an id chosen by the test), open, with `total` units.
async fn create_sale(running: &Running, sale_id: u64, total: u32) {
    sqlx::query(
        "INSERT INTO sales (sale_id, sku, title, price, total, per_user_limit, starts_at, ends_at) \
         VALUES (?, 'SKU', 'T', 500, ?, 10, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) + INTERVAL 1 HOUR)",
    )
    .bind(sale_id)
    .bind(total)
    .execute(&running.db)
    .await
    .expect("sale");
}

async fn orders_of(running: &Running, order_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE order_id = ?")
        .bind(order_id)
        .fetch_one(&running.db)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_order_replayed_after_its_sale_is_created_is_persisted_exactly_once() {
    // Arrange: an admission for a sale MySQL does not hold yet.
    let running = start().await;
    let known = running.sale(10).await;
    let missing = known + 1_000;
    let poison = order(missing, 1, 1);
    let sent = running.send(&poison).await;
    assert_eq!(wait_for(&running.metrics.dead_lettered, 1).await, 1);
    let text = running.metrics.render();
    assert!(
        text.contains("flashgate_persister_dead_letters_total{reason=\"unknown_sale\"} 1\n"),
        "{text}"
    );
    let found = letters(&running.settings, Filter::default()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let letter = &found[0];
    assert_eq!(letter.reason_code, "unknown_sale");
    assert_eq!(letter.reason, format!("sale {missing} does not exist"));
    assert_eq!(letter.source_topic, running.settings.kafka.orders_topic);
    assert_eq!(
        (letter.source_partition, letter.source_offset),
        (sent.partition, sent.offset)
    );
    assert_eq!(letter.key_text(), poison.order_id);
    assert_eq!(orders_of(&running, &poison.order_id).await, 0);

    // Act: the operator creates the sale, then replays the letter.
    create_sale(&running, missing, 5).await;
    let replayer = replayer(&running);
    let first = replayer.replay(&found, false).await.expect("replay");

    // Assert: persisted once; a second replay is refused and sends nothing.
    assert!(
        matches!(first[..], [Outcome::Replayed { replay_no: 1, .. }]),
        "{first:?}"
    );
    assert_eq!(wait_for(&running.metrics.persisted, 1).await, 1);
    assert_eq!(orders_of(&running, &poison.order_id).await, 1);
    let second = replayer.replay(&found, false).await.expect("replay");
    assert!(
        matches!(&second[..], [Outcome::AlreadyReplayed(r)] if r.replay_no == 1 && r.sent.is_some()),
        "{second:?}"
    );
    let history = replayer.history(letter.id).await.expect("history");
    assert_eq!(history.len(), 1, "the refused replay is not recorded");

    // `--again` sends it anyway, and the persister finds the order stored.
    let duplicates = running.metrics.duplicates.load(Ordering::Relaxed);
    let again = replayer.replay(&found, true).await.expect("replay");
    assert!(
        matches!(again[..], [Outcome::Replayed { replay_no: 2, .. }]),
        "{again:?}"
    );
    assert!(wait_for(&running.metrics.duplicates, duplicates + 1).await > duplicates);
    assert_eq!(orders_of(&running, &poison.order_id).await, 1);
    assert_eq!(running.sold(missing).await, 1, "its unit counted once");
    assert_eq!(running.metrics.persisted.load(Ordering::Relaxed), 1);
    assert_eq!(replayer.history(letter.id).await.expect("history").len(), 2);
    assert_eq!(
        running.metrics.dead_lettered.load(Ordering::Relaxed),
        1,
        "no replay was dead-lettered again"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_still_unknown_sale_is_dead_lettered_again_naming_the_letter_it_replayed() {
    let running = start().await;
    let poison = order(running.sale(1).await + 1_000, 1, 1);
    running.send(&poison).await;
    assert_eq!(wait_for(&running.metrics.dead_lettered, 1).await, 1);
    let found = letters(&running.settings, Filter::default()).await;

    let outcome = replayer(&running)
        .replay(&found, false)
        .await
        .expect("replay");

    assert!(outcome[0].is_done(), "{outcome:?}");
    assert_eq!(wait_for(&running.metrics.dead_lettered, 2).await, 2);
    let all = letters(&running.settings, Filter::default()).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1].replay_of, Some(found[0].id.to_string()));
    assert_eq!(all[1].reason_code, "unknown_sale");
    assert_eq!(all[1].payload, found[0].payload, "the message as it was");
    running.stop().await;
}

/// Runs `flashgate-persister dlq <args>` on the test's database and topics.
fn dlq(settings: &Settings, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flashgate-persister"))
        .arg("dlq")
        .args(args)
        .env("FLASHGATE__MYSQL__URL", settings.mysql.url.expose())
        .env(
            "FLASHGATE__KAFKA__DEAD_LETTER_TOPIC",
            &settings.kafka.dead_letter_topic,
        )
        .env("FLASHGATE__LOG__FILTER", "warn")
        .output()
        .expect("run flashgate-persister dlq")
}

/// The letter lines of `dlq list`'s output (the header and the count left out).
fn listed(output: &Output) -> Vec<String> {
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter(|line| line.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .filter(|line| !line.ends_with(" letters"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_filters_by_reason_and_since_and_replay_prints_what_happened() {
    // Arrange: two letters (undecodable, unknown sale), then, a while later, a third.
    let running = start().await;
    let unknown = running.sale(1).await + 1_000;
    let orders_topic = running.settings.kafka.orders_topic.clone();
    running.send_to(&orders_topic, "junk-1", b"{not json").await;
    running.send(&order(unknown, 1, 1)).await;
    assert_eq!(wait_for(&running.metrics.dead_lettered, 2).await, 2);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let between = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = order(unknown, 2, 1);
    running.send(&late).await;
    assert_eq!(wait_for(&running.metrics.dead_lettered, 3).await, 3);
    let settings = running.settings.clone();

    // Act
    let (all, sales, junk, recent, recent_sales) = tokio::task::spawn_blocking({
        let settings = settings.clone();
        let between = between.clone();
        move || {
            (
                dlq(&settings, &["list"]),
                dlq(&settings, &["list", "--reason", "unknown_sale"]),
                dlq(&settings, &["list", "--reason", "undecodable"]),
                dlq(&settings, &["list", "--since", &between]),
                dlq(
                    &settings,
                    &["list", "--reason", "unknown_sale", "--since", "1h"],
                ),
            )
        }
    })
    .await
    .expect("runs");

    // Assert
    assert_eq!(listed(&all).len(), 3, "{all:?}");
    let sales = listed(&sales);
    assert_eq!(sales.len(), 2, "{sales:?}");
    assert!(sales.iter().all(|line| line.contains(" unknown_sale ")));
    let junk = listed(&junk);
    assert_eq!(junk.len(), 1, "{junk:?}");
    assert!(
        junk[0].contains("junk-1") && junk[0].contains("{not json"),
        "{junk:?}"
    );
    let recent = listed(&recent);
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert!(recent[0].contains(&late.order_id), "{recent:?}");
    assert_eq!(listed(&recent_sales).len(), 2);

    // The sale is created; the replay of one id prints what happened; a second is refused
    // (exit 0: nothing failed); a replay by reason sends the other letter of that reason and
    // skips the one replayed.
    create_sale(&running, unknown, 5).await;
    let id = recent[0].split_whitespace().next().expect("id").to_owned();
    let (first, second, missing, show, by_reason) = tokio::task::spawn_blocking(move || {
        (
            dlq(&settings, &["replay", &id]),
            dlq(&settings, &["replay", &id]),
            dlq(&settings, &["replay", "0:999"]),
            dlq(&settings, &["show", &id]),
            dlq(&settings, &["replay", "--reason", "unknown_sale"]),
        )
    })
    .await
    .expect("runs");
    let stdout = |output: &Output| String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(first.status.success(), "{first:?}");
    assert!(
        stdout(&first).contains(&format!("replayed to {orders_topic} partition")),
        "{first:?}"
    );
    assert!(
        stdout(&first).contains("1 of 1 letters replayed"),
        "{first:?}"
    );
    assert!(second.status.success(), "{second:?}");
    assert!(
        stdout(&second).contains("skipped, replayed before (#1 at"),
        "{second:?}"
    );
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        stdout(&missing).contains("0:999: no such letter"),
        "{missing:?}"
    );
    assert!(show.status.success(), "{show:?}");
    assert!(
        stdout(&show).contains("reason:         unknown_sale (sale"),
        "{show:?}"
    );
    assert!(stdout(&show).contains("replay #1:      sent "), "{show:?}");
    assert!(by_reason.status.success(), "{by_reason:?}");
    let report = stdout(&by_reason);
    assert_eq!(
        report.matches(": skipped, replayed before").count(),
        1,
        "{report}"
    );
    assert!(report.contains("1 of 2 letters replayed"), "{report}");
    assert_eq!(
        wait_for(&running.metrics.persisted, 2).await,
        2,
        "both orders stored"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_bad_argument_or_configuration_exits_with_the_usual_codes() {
    let settings = crate::helpers::isolated().await.0;
    let bad_id = dlq(&settings, &["show", "zero:one"]);
    assert_eq!(bad_id.status.code(), Some(2), "{bad_id:?}");
    let neither = dlq(&settings, &["replay"]);
    assert_eq!(
        neither.status.code(),
        Some(2),
        "ids or --reason: {neither:?}"
    );
    let bad_config = Command::new(env!("CARGO_BIN_EXE_flashgate-persister"))
        .args(["dlq", "list"])
        .env("FLASHGATE__PERSISTER__BATCH_SIZE", "zero")
        .output()
        .expect("run");
    assert_eq!(bad_config.status.code(), Some(64), "{bad_config:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_poison_and_good_messages_stores_the_good_parks_the_bad_and_commits() {
    // Arrange: 60 messages waiting before the persister starts, so they come in few batches;
    // every third is poison (garbage, or an admission for a sale that does not exist).
    let mut running = prepare().await;
    let sale_id = running.sale(100).await;
    let topic = running.settings.kafka.orders_topic.clone();
    let (mut good, mut poison) = (0, 0);
    for n in 0..60 {
        match n % 6 {
            0 => {
                running
                    .send_to(&topic, &format!("junk-{n}"), b"\x00\x01")
                    .await;
                poison += 1;
            }
            3 => {
                running.send(&order(sale_id + 1_000, n, 1)).await;
                poison += 1;
            }
            _ => {
                running.send(&order(sale_id, n, 1)).await;
                good += 1;
            }
        }
    }

    // Act
    running.resume().await;

    // Assert
    assert_eq!(wait_for(&running.metrics.persisted, good).await, good);
    assert_eq!(
        wait_for(&running.metrics.dead_lettered, poison).await,
        poison
    );
    let group = running.settings.kafka.consumer_group.clone();
    let settings = running.settings.clone();
    let metrics = running.metrics.clone();
    running.stop().await;
    assert_eq!(running_sold(&settings).await, good);
    let left = tokio::task::spawn_blocking({
        let settings = settings.clone();
        move || left_for_the_group(&settings, &group)
    })
    .await
    .expect("offsets");
    assert_eq!(left, [0, 0], "every offset committed, the poison's too");
    let parked = letters(&settings, Filter::default()).await;
    assert_eq!(parked.len() as u64, poison, "each once: {parked:?}");
    let by = |code: &str| parked.iter().filter(|l| l.reason_code == code).count();
    assert_eq!((by("undecodable"), by("unknown_sale")), (10, 10));
    let text = metrics.render();
    assert!(text.contains("flashgate_persister_dead_letters_total{reason=\"undecodable\"} 10\n"));
    assert!(text.contains("flashgate_persister_dead_letters_total{reason=\"unknown_sale\"} 10\n"));
}

/// Confirmed orders in the test's database.
async fn running_sold(settings: &Settings) -> u64 {
    let db = settings.mysql.connect().await.expect("db");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'confirmed'")
        .fetch_one(&db)
        .await
        .expect("count");
    db.close().await;
    count as u64
}
