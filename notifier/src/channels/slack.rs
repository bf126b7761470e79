//! Slack-compatible incoming-webhook messages for operators: `{"text": ...}`, one line saying
//! what happened (type, the ids and reason the event carries), then its id. Mattermost,
//! Rocket.Chat and Discord's `/slack` endpoints take the same body.

use serde_json::{Value, json};

/// The fields worth a glance, in the order shown, when the event has them.
const SHOWN: [&str; 8] = [
    "sale_id",
    "order_id",
    "coupon_id",
    "policy_id",
    "user_id",
    "quantity",
    "amount",
    "reason",
];

/// The message body for `envelope`.
pub fn message(envelope: &Value) -> Value {
    let kind = envelope["type"].as_str().unwrap_or("event");
    let data = &envelope["data"];
    let mut facts = Vec::new();
    for name in SHOWN {
        match &data[name] {
            Value::Null => {}
            Value::String(text) => facts.push(format!("{name} {text}")),
            other => facts.push(format!("{name} {other}")),
        }
    }
    let failure = data["failure_code"]
        .as_str()
        .map(|code| format!(" ({code})"));
    let text = format!(
        ":rotating_light: *{kind}*: {}{}\n_event {}_",
        facts.join(", "),
        failure.unwrap_or_default(),
        envelope["event_id"].as_str().unwrap_or_default()
    );
    json!({ "text": text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_the_type_the_ids_and_the_reason() {
        let envelope = json!({
            "type": "order.rejected", "event_id": "order.rejected:7-a",
            "data": {"order_id": "7-a", "sale_id": 7, "user_id": "u", "quantity": 2, "reason": "sold out in MySQL"}
        });
        let text = message(&envelope)["text"].as_str().unwrap().to_owned();
        assert!(text.contains("*order.rejected*: sale_id 7, order_id 7-a, user_id u, quantity 2, reason sold out in MySQL"), "{text}");
        assert!(text.ends_with("_event order.rejected:7-a_"), "{text}");
    }
}
