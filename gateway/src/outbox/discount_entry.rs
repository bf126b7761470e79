//! Coupon and point entries as Kafka records: a policy's outbox entries become coupon events
//! keyed by coupon, a point bucket's become point events keyed by user.

use std::collections::HashMap;

use flashgate_events::{
    COUPON_ISSUED, COUPON_REDEEMED, COUPON_REDEMPTION_CANCELLED, CouponIssued, CouponRedemption,
    Envelope, POINTS_REFUNDED, POINTS_USED, PointsRefunded, PointsUsed,
};

use crate::outbox::fields::{Fields, json};

/// A coupon event's message key and envelope.
pub(super) fn coupon_event(
    policy_id: u64,
    fields: &HashMap<String, String>,
    trace_id: &str,
) -> Result<(String, Vec<u8>), String> {
    let f = Fields(fields);
    let kind = f.text("type")?;
    let coupon_id = f.text("coupon_id")?;
    let user_id = f.text("user_id")?;
    let at = f.time("at_ms")?;
    let payload = match kind.as_str() {
        COUPON_ISSUED => {
            let event = CouponIssued {
                coupon_id: coupon_id.clone(),
                policy_id,
                user_id,
                claim_no: u32::try_from(f.number("claim_no")?)
                    .map_err(|_| "claim_no too large".to_owned())?,
                issued_at: at,
                expires_at: f.time("expires_ms")?,
            };
            let id = format!("{COUPON_ISSUED}:{coupon_id}");
            json(&Envelope::v1(
                COUPON_ISSUED,
                id,
                at,
                trace_id.to_owned(),
                event,
            ))?
        }
        COUPON_REDEEMED | COUPON_REDEMPTION_CANCELLED => {
            let seq = f.number("seq")?;
            let event = CouponRedemption {
                coupon_id: coupon_id.clone(),
                policy_id,
                user_id,
                order_id: f.text("order_id")?,
                discount: f.number("discount")?,
                seq,
                at,
            };
            let id = format!("{kind}:{coupon_id}:{seq}");
            json(&Envelope::v1(&kind, id, at, trace_id.to_owned(), event))?
        }
        other => return Err(format!("unknown coupon event type `{other}`")),
    };
    Ok((coupon_id, payload))
}

/// A point event's message key (the user: one user's changes stay in order on one partition)
/// and envelope (its event id is the txid).
pub(super) fn point_event(
    fields: &HashMap<String, String>,
    trace_id: &str,
) -> Result<(String, Vec<u8>), String> {
    let f = Fields(fields);
    let kind = f.text("type")?;
    let txid = f.text("txid")?;
    let user_id = f.text("user_id")?;
    let amount = f.number("amount")?;
    let at = f.time("at_ms")?;
    let trace = trace_id.to_owned();
    let payload = match kind.as_str() {
        POINTS_USED => {
            let event = PointsUsed {
                txid: txid.clone(),
                user_id: user_id.clone(),
                amount,
                order_id: f.text("order_id")?,
                at,
            };
            json(&Envelope::v1(POINTS_USED, txid, at, trace, event))?
        }
        POINTS_REFUNDED => {
            let event = PointsRefunded {
                txid: txid.clone(),
                use_txid: f.text("use_txid")?,
                user_id: user_id.clone(),
                amount,
                at,
            };
            json(&Envelope::v1(POINTS_REFUNDED, txid, at, trace, event))?
        }
        other => return Err(format!("unknown point event type `{other}`")),
    };
    Ok((user_id, payload))
}

#[cfg(test)]
mod tests {
    use flashgate_events::keys::Outbox;

    use super::*;
    use crate::outbox::entry::{Topic, encode};
    use crate::outbox::fields::tests::fields;

    #[test]
    fn policy_entries_become_coupon_events_keyed_by_coupon() {
        let issued = fields(&[
            ("type", "coupon.issued"),
            ("coupon_id", "3-c1"),
            ("user_id", "u1"),
            ("claim_no", "1"),
            ("at_ms", "1700000000000"),
            ("expires_ms", "1700000600000"),
            ("trace_id", "t"),
        ]);
        let record = encode(Outbox::Policy(3), &issued).unwrap();
        assert_eq!(
            (record.topic, record.key.as_str()),
            (Topic::Coupons, "3-c1")
        );
        let envelope: Envelope<CouponIssued> = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(envelope.event_id, "coupon.issued:3-c1");
        assert_eq!(envelope.data.policy_id, 3);

        let redeemed = fields(&[
            ("type", "coupon.redeemed"),
            ("coupon_id", "3-c1"),
            ("user_id", "u1"),
            ("order_id", "9-o"),
            ("discount", "500"),
            ("seq", "2"),
            ("at_ms", "1700000001000"),
        ]);
        let record = encode(Outbox::Policy(3), &redeemed).unwrap();
        let envelope: Envelope<CouponRedemption> = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(envelope.event_id, "coupon.redeemed:3-c1:2");
        assert_eq!(envelope.data.discount, 500);

        let unknown = fields(&[("type", "coupon.melted"), ("coupon_id", "3-c1")]);
        assert!(encode(Outbox::Policy(3), &unknown).is_err());
    }

    #[test]
    fn point_entries_become_point_events_keyed_by_user() {
        let used = fields(&[
            ("type", "points.used"),
            ("txid", "use-1"),
            ("user_id", "u1"),
            ("amount", "40"),
            ("order_id", "9-o"),
            ("at_ms", "1700000000000"),
            ("trace_id", "t"),
        ]);
        let record = encode(Outbox::Points(3), &used).unwrap();
        assert_eq!((record.topic, record.key.as_str()), (Topic::Points, "u1"));
        let envelope: Envelope<PointsUsed> = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(
            (envelope.event_id.as_str(), envelope.data.amount),
            ("use-1", 40)
        );

        let refunded = fields(&[
            ("type", "points.refunded"),
            ("txid", "refund-1"),
            ("use_txid", "use-1"),
            ("user_id", "u1"),
            ("amount", "40"),
            ("at_ms", "1700000000000"),
        ]);
        let record = encode(Outbox::Points(3), &refunded).unwrap();
        let envelope: Envelope<PointsRefunded> = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(envelope.data.use_txid, "use-1");
        let negative = fields(&[("type", "points.used"), ("amount", "-3")]);
        assert!(encode(Outbox::Points(3), &negative).is_err());
    }
}
