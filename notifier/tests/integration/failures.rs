//! Failing endpoints: retried with backoff until delivered; one that never answers has its
//! breaker opened, does not hold the others up, and ends its deliveries in the dead-letter
//! topic, from which a replay delivers each once more, once.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flashgate_events::REPLAY_HEADER;
use serde_json::json;

use crate::helpers::*;

fn paid(tag: &str, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            let order = format!("{tag}-{i}");
            event(
                "order.paid",
                &order,
                json!({"order_id": order, "sale_id": 1, "user_id": "u", "quantity": 1,
                       "end": "paid", "reason": null, "at": chrono::Utc::now().to_rfc3339()}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_answering_500_for_a_while_is_retried_then_delivered_once() {
    let shop = Receiver::spawn(true).await;
    let mut harness = Harness::new(9).await;
    harness.add_webhook("shop", shop.webhook(2_000));
    harness.route(&["order.paid"], &["webhook:shop"]);
    harness.settings.notifier.max_attempts = 30;
    harness.settings.notifier.breaker_failures = 100;
    let notifier = harness.start().await;
    let (ready, _) = ops(notifier.addr, "/readyz").await.expect("readyz answers");
    assert_eq!(ready, 200);
    shop.set(Mode::Fail);

    let events = paid(&unique("r"), 3);
    for event in &events {
        harness.publish(event).await;
    }
    let failing = eventually(PATIENCE, || shop.hits.load(Ordering::SeqCst) >= 9).await;
    assert!(
        failing,
        "each event tried several times while the webhook fails"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    shop.set(Mode::Ok);
    let delivered = eventually(PATIENCE, || shop.counts().len() == 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert!(delivered, "{:?}", shop.counts());
    assert!(
        shop.counts().values().all(|n| *n == 1),
        "{:?}",
        shop.counts()
    );
    let rows = harness.rows().await;
    assert!(
        rows.iter().all(|r| r.3 == "sent" && r.4 > 2),
        "sent after several attempts: {rows:?}"
    );
    assert!(notifier.metrics.deliveries("webhook", "retried") >= 6);
    assert_eq!(notifier.metrics.deliveries("webhook", "dead"), 0);
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_never_answers_opens_its_breaker_holds_no_one_up_and_ends_dead_lettered_then_a_replay_delivers_it_once()
 {
    // Arrange: one endpoint that never answers (a 500 ms deadline), one that does.
    let dead = Receiver::spawn(true).await;
    let live = Receiver::spawn(true).await;
    dead.set(Mode::Hang);
    let mut harness = Harness::new(9).await;
    let notifier_settings = &mut harness.settings.notifier;
    notifier_settings
        .webhooks
        .insert("dead".into(), dead.webhook(500));
    notifier_settings
        .webhooks
        .insert("live".into(), live.webhook(2_000));
    notifier_settings.max_attempts = 5;
    notifier_settings.breaker_failures = 2;
    notifier_settings.breaker_open_ms = 60_000;
    harness.route(&["order.paid"], &["webhook:dead", "webhook:live"]);
    let notifier = harness.start().await;

    // Act: 20 events, in two waves (the second meets the open breaker).
    let events = paid(&unique("d"), 20);
    let started = Instant::now();
    for event in &events[..10] {
        harness.publish(event).await;
    }
    let first_wave = eventually(PATIENCE, || live.counts().len() == 10).await;
    let first_wave_took = started.elapsed();
    let opened = eventually(PATIENCE, || {
        notifier
            .metrics
            .breaker_state(&("webhook".into(), "dead".into()))
            == 1
    })
    .await;
    let second_started = Instant::now();
    for event in &events[10..] {
        harness.publish(event).await;
    }
    let second_wave = eventually(PATIENCE, || live.counts().len() == 20).await;
    let second_wave_took = second_started.elapsed();
    let all_dead = eventually(PATIENCE, || {
        notifier.metrics.deliveries("webhook", "dead") == 20
    })
    .await;

    // Assert: the live endpoint got everything on time, once; the dead one was spared most
    // attempts by its breaker; every one of its deliveries is a letter with its reason.
    assert!(first_wave && second_wave, "{:?}", live.counts());
    assert!(live.counts().values().all(|n| *n == 1));
    assert!(
        first_wave_took < Duration::from_secs(5) && second_wave_took < Duration::from_secs(5),
        "the live endpoint waited: {first_wave_took:?}, {second_wave_took:?}"
    );
    assert!(opened, "the dead endpoint's breaker opened");
    assert!(
        all_dead,
        "dead: {}",
        notifier.metrics.deliveries("webhook", "dead")
    );
    let hits = dead.hits.load(Ordering::SeqCst);
    assert!(
        hits < 20,
        "the open breaker spared the dead endpoint ({hits} requests for 100 attempts)"
    );
    let settings = harness.settings.clone();
    let topic = settings.kafka.dead_letter_topic.clone();
    let letters = tokio::task::spawn_blocking(move || {
        flashgate_testkit::read_topic(&settings, &topic, 20, PATIENCE, Duration::from_secs(1))
    })
    .await
    .expect("read letters");
    assert_eq!(letters.len(), 20);
    for letter in &letters {
        assert!(
            letter.headers["reason"].contains("failed 5 times"),
            "{:?}",
            letter.headers
        );
        assert_eq!(
            letter.headers["source_topic"],
            harness.settings.kafka.order_events_topic
        );
        assert_eq!(letter.headers["notify_target"], "dead");
        assert_eq!(
            letter.headers.get("reason_code").map(String::as_str),
            Some("delivery_failed"),
            "dlq list --reason delivery_failed finds it"
        );
        let event: serde_json::Value = serde_json::from_slice(&letter.payload).expect("event");
        assert_eq!(event["type"], "order.paid");
    }
    let rows = harness.rows().await;
    let dead_rows = rows
        .iter()
        .filter(|r| r.2 == "dead" && r.3 == "dead")
        .count();
    assert_eq!(dead_rows, 20, "{rows:?}");

    // Act 2: the endpoint is back; one letter is replayed to its source topic (twice, as a
    // redelivery would), and an event is republished without the header.
    dead.set(Mode::Ok);
    notifier.stop().await;
    harness.settings.notifier.breaker_open_ms = 200;
    let notifier = harness.start().await;
    let letter = &letters[0];
    let replayed: serde_json::Value = serde_json::from_slice(&letter.payload).expect("event");
    let source = harness.settings.kafka.order_events_topic.clone();
    for _ in 0..2 {
        harness
            .publish_with(&source, &letter.key, &replayed, &[(REPLAY_HEADER, "7:42")])
            .await;
    }
    harness.publish(&events[1]).await;
    let redelivered = eventually(PATIENCE, || !dead.counts().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Assert 2: the replayed one delivered once where it had died; nothing else anywhere.
    assert!(redelivered);
    let counts = dead.counts();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(counts.get(replayed["event_id"].as_str().unwrap()), Some(&1));
    assert_eq!(live.counts().len(), 20);
    assert!(live.counts().values().all(|n| *n == 1));
    assert_eq!(notifier.metrics.deliveries("webhook", "revived"), 1);
    notifier.stop().await;
}
