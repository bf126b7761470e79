//! Operators hear that a sale sold out: the persister's `sale.sold_out` (as it writes it)
//! reaches a Slack-compatible receiver once, however often it is announced.

use flashgate_config::{Secret, SlackSettings};
use flashgate_events::SaleSoldOut;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_sale_sold_out_reaches_the_slack_receiver_once_even_when_announced_twice() {
    let ops_channel = Receiver::spawn(false).await;
    let mut harness = Harness::new(9).await;
    harness.settings.notifier.slack.insert(
        "ops".into(),
        SlackSettings {
            url: Secret::new(ops_channel.url()),
            timeout_ms: 5_000,
        },
    );
    harness.route(&["sale.sold_out"], &["slack:ops"]);
    let notifier = harness.start().await;

    let sale_id = 4_000_000 + u64::from(std::process::id() % 1_000);
    let sold_out = SaleSoldOut {
        sale_id,
        total: 10,
        sold: 10,
    }
    .into_envelope("trace".into(), chrono::Utc::now());
    let event = serde_json::to_value(&sold_out).expect("json");
    let topic = harness.topic_of("sale.sold_out");
    let key = sale_id.to_string();
    harness.publish_with(&topic, &key, &event, &[]).await;
    harness.publish_with(&topic, &key, &event, &[]).await; // announced again (a replay)
    let delivered = eventually(PATIENCE, || !ops_channel.accepted().is_empty()).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    assert!(delivered, "the sell-out never reached Slack");
    let accepted = ops_channel.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let text = accepted[0].body["text"].as_str().expect("text");
    assert!(text.contains("*sale.sold_out*"), "{text}");
    assert!(text.contains(&format!("sale_id {sale_id}")), "{text}");
    assert!(
        text.contains(&format!("sale.sold_out:{sale_id}:10")),
        "{text}"
    );
    notifier.stop().await;
}
