//! Outbox entries as Kafka records: each becomes the record its outbox calls for (admitted
//! orders, order ends, and payment and refund requests from a sale's outbox, coupon events
//! from a policy's, point events from a point bucket's).

use std::collections::HashMap;

use flashgate_events::keys::Outbox;
use flashgate_events::{
    OrderAdmitted, OrderEnd, OrderEnded, PAYMENT_REFUND_REQUESTED, PAYMENT_REQUESTED,
    PaymentRequested, RefundRequested,
};

use crate::outbox::discount_entry::{coupon_event, point_event};
use crate::outbox::fields::{Fields, json};

/// Which topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Admitted orders and order ends.
    Orders,
    /// Coupon events.
    Coupons,
    /// Point events.
    Points,
    /// Payment and refund requests.
    Payments,
}

/// A Kafka record made from one entry.
#[derive(Debug)]
pub struct Record {
    /// Destination.
    pub topic: Topic,
    /// Message key (the sale, the coupon or the user: keeps one thing's events in order).
    pub key: String,
    /// The JSON envelope.
    pub payload: Vec<u8>,
    /// Trace id of the request that wrote the entry.
    pub trace_id: String,
}

/// The record for an entry of `outbox`, or why it can never be sent.
pub fn encode(outbox: Outbox, fields: &HashMap<String, String>) -> Result<Record, String> {
    let trace_id = fields.get("trace_id").cloned().unwrap_or_default();
    let (topic, key, payload) = match outbox {
        // Keyed by sale: a sale's admissions and ends stay on one partition in the order Redis
        // decided them, so the persister never sees a unit sold again before the end that gave
        // it back (MySQL's stock guard would refuse the new order). An end carries its `type`
        // (`order.cancelled`, ...); an admission has none. Payment and refund requests go to
        // the saga keyed by order id (one order's requests in order, orders spread over the
        // saga's instances).
        Outbox::Sale(sale_id)
            if fields
                .get("type")
                .is_some_and(|kind| kind.starts_with("payment.")) =>
        {
            let (key, payload) = payment_request(sale_id, fields, &trace_id)?;
            (Topic::Payments, key, payload)
        }
        Outbox::Sale(sale_id) if fields.contains_key("type") => {
            let ended = decode_end(sale_id, fields)?;
            (
                Topic::Orders,
                sale_id.to_string(),
                json(&ended.into_envelope(trace_id.clone()))?,
            )
        }
        Outbox::Sale(sale_id) => {
            let order = decode(sale_id, fields)?;
            (
                Topic::Orders,
                sale_id.to_string(),
                json(&order.into_envelope(trace_id.clone()))?,
            )
        }
        Outbox::Policy(policy_id) => {
            let (key, payload) = coupon_event(policy_id, fields, &trace_id)?;
            (Topic::Coupons, key, payload)
        }
        Outbox::Points(_) => {
            let (key, payload) = point_event(fields, &trace_id)?;
            (Topic::Points, key, payload)
        }
    };
    Ok(Record {
        topic,
        key,
        payload,
        trace_id,
    })
}

/// A payment or refund request's message key (the order) and envelope.
fn payment_request(
    sale_id: u64,
    fields: &HashMap<String, String>,
    trace_id: &str,
) -> Result<(String, Vec<u8>), String> {
    let f = Fields(fields);
    let order_id = f.text("order_id")?;
    let user_id = f.text("user_id")?;
    let at = f.time("at_ms")?;
    let trace = trace_id.to_owned();
    let payload = match f.text("type")?.as_str() {
        PAYMENT_REQUESTED => json(
            &PaymentRequested {
                order_id: order_id.clone(),
                sale_id,
                user_id,
                amount: f.number("amount")?,
                payment_token: f.text("payment_token")?,
                pay_by: f.time("pay_by_ms")?,
                give_up_at: f.time("give_up_ms")?,
                requested_at: at,
            }
            .into_envelope(trace),
        )?,
        PAYMENT_REFUND_REQUESTED => json(
            &RefundRequested {
                order_id: order_id.clone(),
                sale_id,
                user_id,
                reason: f.text("reason")?,
                requested_at: at,
            }
            .into_envelope(trace),
        )?,
        other => return Err(format!("unknown payment event type `{other}`")),
    };
    Ok((order_id, payload))
}

/// A sale's outbox entry as an admitted order.
fn decode(sale_id: u64, fields: &HashMap<String, String>) -> Result<OrderAdmitted, String> {
    let f = Fields(fields);
    let quantity =
        u32::try_from(f.number("quantity")?).map_err(|_| "quantity too large".to_owned())?;
    let unit_price = f.number("unit_price")?;
    Ok(OrderAdmitted {
        order_id: f.text("order_id")?,
        sale_id,
        user_id: f.text("user_id")?,
        quantity,
        unit_price,
        amount: unit_price
            .checked_mul(u64::from(quantity))
            .ok_or_else(|| "amount overflows".to_owned())?,
        admitted_at: f.time("admitted_ms")?,
        // Entries written before orders had a payment window have no `pay_by_ms`.
        pay_by: match fields.contains_key("pay_by_ms") {
            true => Some(f.time("pay_by_ms")?),
            false => None,
        },
    })
}

/// A sale's outbox entry as an order's end (`lua/order_close.lua`).
fn decode_end(sale_id: u64, fields: &HashMap<String, String>) -> Result<OrderEnded, String> {
    let f = Fields(fields);
    let kind = f.text("type")?;
    let end = kind
        .strip_prefix("order.")
        .and_then(OrderEnd::from_status)
        .ok_or_else(|| format!("unknown order event type `{kind}`"))?;
    let reason = f.text("reason")?;
    Ok(OrderEnded {
        order_id: f.text("order_id")?,
        sale_id,
        user_id: f.text("user_id")?,
        quantity: u32::try_from(f.number("quantity")?)
            .map_err(|_| "quantity too large".to_owned())?,
        end,
        reason: (!reason.is_empty()).then_some(reason),
        at: f.time("at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use flashgate_events::Envelope;

    use super::*;
    use crate::outbox::fields::tests::fields;

    #[test]
    fn a_payment_request_goes_to_the_saga_keyed_by_its_order() {
        let entry = fields(&[
            ("type", "payment.requested"),
            ("order_id", "7-abc"),
            ("user_id", "u1"),
            ("amount", "1990"),
            ("payment_token", "tok_ok"),
            ("pay_by_ms", "1700000600000"),
            ("give_up_ms", "1700000660000"),
            ("at_ms", "1700000000000"),
            ("trace_id", "t1"),
        ]);
        let record = encode(Outbox::Sale(7), &entry).unwrap();
        assert_eq!(
            (record.topic, record.key.as_str()),
            (Topic::Payments, "7-abc")
        );
        let envelope: Envelope<PaymentRequested> = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(envelope.event_id, "payment.requested:7-abc");
        assert_eq!((envelope.data.amount, envelope.data.sale_id), (1_990, 7));
        assert_eq!(
            envelope.data.give_up_at.timestamp_millis(),
            1_700_000_660_000
        );
        let refund = fields(&[
            ("type", "payment.refund_requested"),
            ("order_id", "7-abc"),
            ("user_id", "u1"),
            ("reason", "cancelled_by_shopper"),
            ("at_ms", "1700000000000"),
        ]);
        let record = encode(Outbox::Sale(7), &refund).unwrap();
        let envelope: Envelope<RefundRequested> = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(envelope.data.reason, "cancelled_by_shopper");
        let unknown = fields(&[("type", "payment.lost"), ("order_id", "7-a")]);
        assert!(encode(Outbox::Sale(7), &unknown).is_err());
    }

    #[test]
    fn an_end_entry_becomes_an_order_event_keyed_by_its_sale() {
        let entry = fields(&[
            ("type", "order.expired"),
            ("order_id", "7-abc"),
            ("user_id", "u1"),
            ("quantity", "2"),
            ("reason", "not_paid_in_time"),
            ("at_ms", "1700000000000"),
            ("trace_id", "t1"),
        ]);
        let record = encode(Outbox::Sale(7), &entry).unwrap();
        assert_eq!((record.topic, record.key.as_str()), (Topic::Orders, "7"));
        let envelope: Envelope<OrderEnded> = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(envelope.kind, "order.expired");
        assert_eq!(envelope.event_id, "order.expired:7-abc");
        assert_eq!(envelope.data.end, OrderEnd::Expired);
        assert_eq!(envelope.data.reason.as_deref(), Some("not_paid_in_time"));
        assert_eq!(envelope.data.sale_id, 7);
        let unknown = fields(&[("type", "order.lost"), ("order_id", "7-a")]);
        assert!(encode(Outbox::Sale(7), &unknown).is_err());
    }

    #[test]
    fn an_outbox_entry_becomes_an_admitted_order() {
        let entry = fields(&[
            ("order_id", "7-abc"),
            ("user_id", "u1"),
            ("quantity", "2"),
            ("unit_price", "1500"),
            ("admitted_ms", "1700000000000"),
            ("trace_id", "t1"),
        ]);
        let order = decode(7, &entry).unwrap();
        assert_eq!(order.amount, 3000);
        assert_eq!(order.sale_id, 7);
        let broken = fields(&[("order_id", "x")]);
        assert!(decode(7, &broken).is_err());
        let record = encode(Outbox::Sale(7), &entry).unwrap();
        assert_eq!((record.topic, record.key.as_str()), (Topic::Orders, "7"));
        assert_eq!(record.trace_id, "t1");
    }
}
