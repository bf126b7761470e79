//! Every shopper's event reaches its channels once: through a SIGKILL of the binary in the
//! middle of deliveries, its restart, and the same events published again.

use std::collections::BTreeMap;
use std::time::Duration;

use flashgate_config::Secret;
use flashgate_config::SlackSettings;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_lifecycle_event_reaches_its_channels_once_through_a_sigkill_a_restart_and_a_republish()
 {
    // Arrange: webhook + email for every shopper's event, Slack for the operator's; u1 has an
    // address, u2 has none.
    let sink = SmtpSink::start();
    let shop = Receiver::spawn(true).await;
    let ops_room = Receiver::spawn(false).await;
    let mut harness = Harness::new(sink.port).await;
    harness.add_webhook("shop", shop.webhook(2_000));
    harness.settings.notifier.slack.insert(
        "ops".into(),
        SlackSettings {
            url: Secret::new(ops_room.url()),
            timeout_ms: 2_000,
        },
    );
    harness.route(&SHOPPER_KINDS, &["webhook:shop", "email"]);
    harness.route(
        &["order.rejected", "coupon.rejected", "points.rejected"],
        &["slack:ops"],
    );
    harness.contact("u1", "u1@shop.test").await;
    // The webhook fails for a while below: retried all along, never paused or given up.
    harness.settings.notifier.breaker_failures = 1_000;
    harness.settings.notifier.max_attempts = 100;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let first: Vec<_> = [shopper_events("a1", "u1"), shopper_events("a2", "u2")].concat();
    let second: Vec<_> = [shopper_events("b1", "u1"), shopper_events("b2", "u2")].concat();

    // Act 1: the binary delivers the first batch.
    let mut notifier = harness.spawn_binary(listen);
    for event in &first {
        harness.publish(event).await;
    }
    let all_first = eventually(PATIENCE, || {
        shop.counts().len() == first.len() && sink.messages().len() == 8
    })
    .await;
    assert!(
        all_first,
        "first batch: {:?}, {} mails",
        shop.counts(),
        sink.messages().len()
    );

    // Act 2: the second batch meets a failing webhook (its rows pending, retrying); the
    // notifier is SIGKILLed in the middle, the webhook recovers, the notifier restarts.
    shop.set(Mode::Fail);
    let hits = shop.hits.load(std::sync::atomic::Ordering::SeqCst);
    for event in &second {
        harness.publish(event).await;
    }
    let retrying = eventually(PATIENCE, || {
        shop.hits.load(std::sync::atomic::Ordering::SeqCst) >= hits + second.len() as u64
            && sink.messages().len() == 16
            && ops_room.counts().len() == 12
    })
    .await;
    assert!(
        retrying,
        "the second batch reached the webhook (failing), the mails and Slack"
    );
    // The emails' and Slack's rows say `sent` a moment after their answers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    notifier.kill();
    shop.set(Mode::Ok);
    let mut notifier = harness.spawn_binary(listen);
    let all_second = eventually(PATIENCE, || {
        shop.counts().len() == first.len() + second.len() && sink.messages().len() == 16
    })
    .await;
    assert!(
        all_second,
        "after the restart: {:?}, {} mails",
        shop.counts(),
        sink.messages().len()
    );

    // Act 3: every event published again.
    for event in first.iter().chain(&second) {
        harness.publish(event).await;
    }
    let mut consumed = 0;
    for _ in 0..300 {
        let (_, text) = ops(listen, "/metrics").await.unwrap_or_default();
        consumed = metric(&text, "flashgate_notifier_consumed_total");
        if consumed >= (first.len() + second.len()) as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        consumed >= 32,
        "the republished events were consumed: {consumed}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, metrics) = ops(listen, "/metrics").await.expect("metrics answer");
    notifier.kill();

    // Assert: once per event and channel; nothing to u2's missing address; signatures good.
    let counts = shop.counts();
    assert_eq!(counts.len(), first.len() + second.len(), "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "a webhook event delivered twice: {counts:?}"
    );
    for accepted in shop.accepted() {
        let kind = accepted.body["type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            SHOPPER_KINDS.contains(&kind.as_str()),
            "the envelope is the body: {:?}",
            accepted.body
        );
        assert_eq!(accepted.body["event_id"], accepted.event_id);
    }
    assert_eq!(
        shop.bad_signatures
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let mut mails: BTreeMap<String, usize> = BTreeMap::new();
    for (to, data) in sink.messages() {
        assert_eq!(to, "u1@shop.test");
        let subject = data
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .unwrap_or_default()
            .to_owned();
        let event_line = data
            .lines()
            .find(|l| l.starts_with("Event "))
            .unwrap_or_default()
            .to_owned();
        assert!(!subject.is_empty(), "{data}");
        *mails.entry(event_line).or_default() += 1;
    }
    assert_eq!(mails.len(), 16, "{mails:?}");
    assert!(
        mails.values().all(|n| *n == 1),
        "an email sent twice: {mails:?}"
    );
    let slack = ops_room.counts();
    assert_eq!(slack.len(), 12, "3 operator events x 4 tags: {slack:?}");
    assert!(slack.values().all(|n| *n == 1), "{slack:?}");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            r#"flashgate_notifier_deliveries_total{channel="webhook",outcome="duplicate"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"flashgate_notifier_deliveries_total{channel="email",outcome="skipped_no_address"}"#
        ),
        "{metrics}"
    );
    let rows = harness.rows().await;
    assert!(rows.iter().all(|r| r.3 == "sent"), "{rows:?}");
    assert_eq!(rows.len(), 32 + 16 + 12, "webhook, email (u1 only), slack");
}
