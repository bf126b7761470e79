//! Turning a Kafka message into an event the persister stores, or a reason it can never be one.

use flashgate_events::ids::{
    COUPON_ID_MAX_LEN, ORDER_ID_MAX_LEN, TXID_MAX_LEN, USER_ID_MAX_LEN, fits,
};
use flashgate_events::{
    COUPON_ISSUED, COUPON_REDEEMED, COUPON_REDEMPTION_CANCELLED, CouponIssued, CouponRedemption,
    Envelope, ORDER_ADMITTED, ORDER_CANCELLED, ORDER_EXPIRED, ORDER_PAID, OrderAdmitted,
    OrderEnded, POINTS_REFUNDED, POINTS_USED, PointsRefunded, PointsUsed, refund_txid,
};
use serde::de::DeserializeOwned;

/// What a message asks the persister to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An order admitted by Redis.
    Order(OrderAdmitted),
    /// An open order ended in Redis: cancelled, expired or paid.
    OrderEnded(OrderEnded),
    /// A coupon claimed in Redis.
    CouponIssued(CouponIssued),
    /// A coupon redeemed (`redeemed` true) or its redemption undone.
    CouponRedemption {
        /// Redeemed, or cancelled.
        redeemed: bool,
        /// The change.
        change: CouponRedemption,
    },
    /// Points spent in Redis.
    PointsUsed(PointsUsed),
    /// A use given back in Redis.
    PointsRefunded(PointsRefunded),
}

/// The event in `payload`, with its trace id; `Err` says why the message is poison.
pub fn event(payload: Option<&[u8]>) -> Result<(Event, String), String> {
    let payload = payload.ok_or("empty message")?;
    let envelope: Envelope<serde_json::Value> =
        serde_json::from_slice(payload).map_err(|err| format!("undecodable: {err}"))?;
    if envelope.version != 1 {
        return Err(format!(
            "unsupported version {} of {}",
            envelope.version, envelope.kind
        ));
    }
    let event = match envelope.kind.as_str() {
        ORDER_ADMITTED => Event::Order(checked_order(data(envelope.data)?)?),
        kind @ (ORDER_CANCELLED | ORDER_EXPIRED | ORDER_PAID) => {
            Event::OrderEnded(checked_end(kind, data(envelope.data)?)?)
        }
        COUPON_ISSUED => Event::CouponIssued(checked_coupon(data(envelope.data)?)?),
        kind @ (COUPON_REDEEMED | COUPON_REDEMPTION_CANCELLED) => {
            let change: CouponRedemption = data(envelope.data)?;
            check_id("coupon_id", &change.coupon_id, COUPON_ID_MAX_LEN)?;
            check_id("user_id", &change.user_id, USER_ID_MAX_LEN)?;
            // Empty until the coupon is redeemed on an order.
            if change.order_id.len() > ORDER_ID_MAX_LEN {
                return Err(format!(
                    "order_id must have at most {ORDER_ID_MAX_LEN} characters"
                ));
            }
            Event::CouponRedemption {
                redeemed: kind == COUPON_REDEEMED,
                change,
            }
        }
        POINTS_USED => {
            let used: PointsUsed = data(envelope.data)?;
            check_id("txid", &used.txid, TXID_MAX_LEN)?;
            check_id("user_id", &used.user_id, USER_ID_MAX_LEN)?;
            if !used.txid.starts_with("use-") || used.amount == 0 {
                return Err("a use needs a `use-` txid and at least 1 point".into());
            }
            check_id("order_id", &used.order_id, ORDER_ID_MAX_LEN)?;
            Event::PointsUsed(used)
        }
        POINTS_REFUNDED => {
            let refund: PointsRefunded = data(envelope.data)?;
            check_id("txid", &refund.txid, TXID_MAX_LEN)?;
            check_id("user_id", &refund.user_id, USER_ID_MAX_LEN)?;
            if refund_txid(&refund.use_txid).as_deref() != Some(refund.txid.as_str())
                || refund.amount == 0
            {
                return Err("a refund's txid must be its use's, and at least 1 point".into());
            }
            Event::PointsRefunded(refund)
        }
        other => return Err(format!("unknown event type `{other}`")),
    };
    Ok((event, envelope.trace_id))
}

fn data<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|err| format!("undecodable data: {err}"))
}

/// `Err` naming the field when `id` is empty or longer than `max_len` (see [`fits`]).
fn check_id(field: &str, id: &str, max_len: usize) -> Result<(), String> {
    if fits(id, max_len) {
        Ok(())
    } else {
        Err(format!("{field} must have 1 to {max_len} characters"))
    }
}

fn checked_order(order: OrderAdmitted) -> Result<OrderAdmitted, String> {
    check_id("order_id", &order.order_id, ORDER_ID_MAX_LEN)?;
    check_id("user_id", &order.user_id, USER_ID_MAX_LEN)?;
    if order.quantity == 0 {
        return Err("quantity must be at least 1".into());
    }
    if order.unit_price.checked_mul(u64::from(order.quantity)) != Some(order.amount) {
        return Err("amount is not quantity * unit_price".into());
    }
    Ok(order)
}

/// An end is stored under its order and announced under its type: the two must agree with
/// the data, or the lifecycle topic would carry an event its own type contradicts.
fn checked_end(kind: &str, ended: OrderEnded) -> Result<OrderEnded, String> {
    check_id("order_id", &ended.order_id, ORDER_ID_MAX_LEN)?;
    check_id("user_id", &ended.user_id, USER_ID_MAX_LEN)?;
    if ended.quantity == 0 {
        return Err("quantity must be at least 1".into());
    }
    if ended.end.event_type() != kind {
        return Err(format!(
            "an event of type `{kind}` says the order ended `{}`",
            ended.end.status()
        ));
    }
    Ok(ended)
}

fn checked_coupon(coupon: CouponIssued) -> Result<CouponIssued, String> {
    check_id("coupon_id", &coupon.coupon_id, COUPON_ID_MAX_LEN)?;
    check_id("user_id", &coupon.user_id, USER_ID_MAX_LEN)?;
    if coupon.claim_no == 0 {
        return Err("claim_no must be at least 1".into());
    }
    Ok(coupon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_json(amount: u64, kind: &str, version: u32) -> String {
        format!(
            r#"{{"type":"{kind}","version":{version},"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{{"order_id":"1-a","sale_id":1,"user_id":"u","quantity":2,"unit_price":5,"amount":{amount},"admitted_at":"2026-01-01T00:00:00Z"}}}}"#
        )
    }

    fn decode(json: &str) -> Result<Event, String> {
        event(Some(json.as_bytes())).map(|(event, _)| event)
    }

    #[test]
    fn valid_orders_pass_and_poison_is_named() {
        assert!(matches!(
            decode(&order_json(10, "order.admitted", 1)),
            Ok(Event::Order(_))
        ));
        let wrong_amount = decode(&order_json(11, "order.admitted", 1));
        assert!(wrong_amount.unwrap_err().contains("amount"));
        let wrong_type = decode(&order_json(10, "order.shipped", 1));
        assert!(wrong_type.unwrap_err().contains("unknown event type"));
        let wrong_version = decode(&order_json(10, "order.admitted", 9));
        assert!(wrong_version.unwrap_err().contains("version"));
        assert!(decode("{nope").unwrap_err().starts_with("undecodable"));
        assert!(event(None).is_err());
    }

    fn end_json(kind: &str, end: &str, quantity: u32) -> String {
        format!(
            r#"{{"type":"{kind}","version":1,"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{{"order_id":"1-a","sale_id":1,"user_id":"u","quantity":{quantity},"end":"{end}","reason":"not_paid_in_time","at":"2026-01-01T00:10:00Z"}}}}"#
        )
    }

    #[test]
    fn ends_share_the_orders_topic_and_are_told_from_admissions_by_type() {
        for (kind, end) in [
            ("order.cancelled", "cancelled"),
            ("order.expired", "expired"),
            ("order.paid", "paid"),
        ] {
            let decoded = decode(&end_json(kind, end, 1));
            assert!(
                matches!(&decoded, Ok(Event::OrderEnded(e)) if e.end.status() == end),
                "{kind}: {decoded:?}"
            );
        }
        let contradicted = decode(&end_json("order.paid", "cancelled", 1));
        assert!(contradicted.unwrap_err().contains("says the order ended"));
        assert!(
            decode(&end_json("order.expired", "expired", 0))
                .unwrap_err()
                .contains("quantity")
        );
        let admitted_as_end = decode(&order_json(10, "order.cancelled", 1));
        assert!(admitted_as_end.unwrap_err().starts_with("undecodable data"));
    }

    #[test]
    fn coupon_events_are_told_apart_by_type() {
        let issued = r#"{"type":"coupon.issued","version":1,"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{"coupon_id":"3-c","policy_id":3,"user_id":"u","claim_no":1,"issued_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-02T00:00:00Z"}}"#;
        assert!(matches!(decode(issued), Ok(Event::CouponIssued(c)) if c.policy_id == 3));
        let cancelled = r#"{"type":"coupon.redemption_cancelled","version":1,"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{"coupon_id":"3-c","policy_id":3,"user_id":"u","order_id":"9-o","discount":0,"seq":3,"at":"2026-01-01T00:00:00Z"}}"#;
        assert!(matches!(
            decode(cancelled),
            Ok(Event::CouponRedemption { redeemed: false, change }) if change.seq == 3
        ));
        let zero_claim = issued.replace(r#""claim_no":1"#, r#""claim_no":0"#);
        assert!(decode(&zero_claim).unwrap_err().contains("claim_no"));
    }

    #[test]
    fn point_events_need_matching_txids_and_positive_amounts() {
        let used = r#"{"type":"points.used","version":1,"event_id":"use-1","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{"txid":"use-1","user_id":"u","amount":5,"order_id":"9-o","at":"2026-01-01T00:00:00Z"}}"#;
        assert!(matches!(decode(used), Ok(Event::PointsUsed(u)) if u.amount == 5));
        assert!(decode(&used.replace(r#""amount":5"#, r#""amount":0"#)).is_err());
        assert!(decode(&used.replace(r#""txid":"use-1""#, r#""txid":"earn-1""#)).is_err());
        let refund = r#"{"type":"points.refunded","version":1,"event_id":"refund-1","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{"txid":"refund-1","use_txid":"use-1","user_id":"u","amount":5,"at":"2026-01-01T00:00:00Z"}}"#;
        assert!(matches!(decode(refund), Ok(Event::PointsRefunded(r)) if r.use_txid == "use-1"));
        let other_use = refund.replace(r#""use_txid":"use-1""#, r#""use_txid":"use-2""#);
        assert!(decode(&other_use).is_err());
    }

    #[test]
    fn an_order_id_longer_than_its_column_is_poison_in_every_event() {
        let long = "9".repeat(ORDER_ID_MAX_LEN + 1);
        let order = order_json(10, "order.admitted", 1).replace("1-a", &long);
        assert!(decode(&order).unwrap_err().contains("order_id"));
        let used = r#"{"type":"points.used","version":1,"event_id":"use-1","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{"txid":"use-1","user_id":"u","amount":5,"order_id":"9-o","at":"2026-01-01T00:00:00Z"}}"#;
        assert!(
            decode(&used.replace("9-o", &long))
                .unwrap_err()
                .contains("order_id")
        );
        let redeemed = r#"{"type":"coupon.redeemed","version":1,"event_id":"e","occurred_at":"2026-01-01T00:00:00Z","trace_id":"t","data":{"coupon_id":"3-c","policy_id":3,"user_id":"u","order_id":"9-o","discount":5,"seq":2,"at":"2026-01-01T00:00:00Z"}}"#;
        assert!(decode(redeemed).is_ok());
        assert!(
            decode(&redeemed.replace("9-o", &long))
                .unwrap_err()
                .contains("order_id")
        );
    }
}
