//! Turning a Kafka message into an admitted order, or a reason it can never be one.

use flashgate_events::{Envelope, ORDER_ADMITTED, OrderAdmitted};

/// The order in `payload`, with its trace id; `Err` says why the message is poison.
pub fn admitted_order(payload: Option<&[u8]>) -> Result<(OrderAdmitted, String), String> {
    let payload = payload.ok_or("empty message")?;
    let envelope: Envelope<OrderAdmitted> =
        serde_json::from_slice(payload).map_err(|err| format!("undecodable: {err}"))?;
    if envelope.kind != ORDER_ADMITTED {
        return Err(format!("unknown event type `{}`", envelope.kind));
    }
    if envelope.version != 1 {
        return Err(format!(
            "unsupported version {} of {ORDER_ADMITTED}",
            envelope.version
        ));
    }
    let order = envelope.data;
    if order.order_id.is_empty() || order.order_id.len() > 40 {
        return Err("order_id must have 1 to 40 characters".into());
    }
    if order.user_id.is_empty() || order.user_id.len() > 64 {
        return Err("user_id must have 1 to 64 characters".into());
    }
    if order.quantity == 0 {
        return Err("quantity must be at least 1".into());
    }
    if order.unit_price.checked_mul(u64::from(order.quantity)) != Some(order.amount) {
        return Err("amount is not quantity * unit_price".into());
    }
    Ok((order, envelope.trace_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_json(amount: u64, kind: &str, version: u32) -> String {
        format!(
            r#"{{"type":"{kind}","version":{version},"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{{"order_id":"1-a","sale_id":1,"user_id":"u","quantity":2,"unit_price":5,"amount":{amount},"admitted_at":"2026-01-01T00:00:00Z"}}}}"#
        )
    }

    #[test]
    fn valid_orders_pass_and_poison_is_named() {
        assert!(admitted_order(Some(order_json(10, "order.admitted", 1).as_bytes())).is_ok());
        let wrong_amount = admitted_order(Some(order_json(11, "order.admitted", 1).as_bytes()));
        assert!(wrong_amount.unwrap_err().contains("amount"));
        let wrong_type = admitted_order(Some(order_json(10, "order.paid", 1).as_bytes()));
        assert!(wrong_type.unwrap_err().contains("unknown event type"));
        let wrong_version = admitted_order(Some(order_json(10, "order.admitted", 9).as_bytes()));
        assert!(wrong_version.unwrap_err().contains("version"));
        assert!(
            admitted_order(Some(b"{nope"))
                .unwrap_err()
                .starts_with("undecodable")
        );
        assert!(admitted_order(None).is_err());
    }
}
