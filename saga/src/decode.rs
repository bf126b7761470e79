//! Turning a message of the payments topic into a request the saga stores, or the reason it
//! never can be one (the message then goes to the dead-letter topic).

use flashgate_events::ids::{ORDER_ID_MAX_LEN, USER_ID_MAX_LEN, fits};
use flashgate_events::{
    Envelope, PAYMENT_REFUND_REQUESTED, PAYMENT_REQUESTED, PaymentRequested, RefundRequested,
};
use flashgate_gateway::orders::status::sale_of;
use serde::de::DeserializeOwned;

/// Longest payment token (`payments.payment_token`).
pub const TOKEN_MAX_LEN: usize = 255;

/// What a message asks of the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Charge for an order.
    Payment(PaymentRequested),
    /// Give back a paid order's money (it is being cancelled).
    Refund(RefundRequested),
}

impl Request {
    /// The order it is about.
    pub fn order_id(&self) -> &str {
        match self {
            Request::Payment(request) => &request.order_id,
            Request::Refund(request) => &request.order_id,
        }
    }
}

/// The request in `payload`, with its trace id; `Err` says why the message is poison.
pub fn request(payload: Option<&[u8]>) -> Result<(Request, String), String> {
    let payload = payload.ok_or("empty message")?;
    let envelope: Envelope<serde_json::Value> =
        serde_json::from_slice(payload).map_err(|err| format!("undecodable: {err}"))?;
    if envelope.version != 1 {
        return Err(format!(
            "unsupported version {} of {}",
            envelope.version, envelope.kind
        ));
    }
    let request = match envelope.kind.as_str() {
        PAYMENT_REQUESTED => {
            let request: PaymentRequested = data(envelope.data)?;
            check_order(&request.order_id, request.sale_id, &request.user_id)?;
            if request.amount == 0 {
                return Err("amount must be at least 1 (a zero amount is paid in Redis)".into());
            }
            if !fits(&request.payment_token, TOKEN_MAX_LEN) {
                return Err(format!(
                    "payment_token must have 1 to {TOKEN_MAX_LEN} characters"
                ));
            }
            if request.give_up_at < request.pay_by {
                return Err("give_up_at is before pay_by".into());
            }
            Request::Payment(request)
        }
        PAYMENT_REFUND_REQUESTED => {
            let request: RefundRequested = data(envelope.data)?;
            check_order(&request.order_id, request.sale_id, &request.user_id)?;
            Request::Refund(request)
        }
        other => return Err(format!("unknown event type `{other}`")),
    };
    Ok((request, envelope.trace_id))
}

fn data<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|err| format!("undecodable data: {err}"))
}

/// The ids fit their columns, and the order id names its sale (Redis finds the order's keys
/// by it).
fn check_order(order_id: &str, sale_id: u64, user_id: &str) -> Result<(), String> {
    if !fits(order_id, ORDER_ID_MAX_LEN) {
        return Err(format!(
            "order_id must have 1 to {ORDER_ID_MAX_LEN} characters"
        ));
    }
    if !fits(user_id, USER_ID_MAX_LEN) {
        return Err(format!(
            "user_id must have 1 to {USER_ID_MAX_LEN} characters"
        ));
    }
    if sale_of(order_id) != Some(sale_id) {
        return Err(format!("order {order_id} is not of sale {sale_id}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn requested() -> PaymentRequested {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).expect("time");
        PaymentRequested {
            order_id: "7-0123456789abcdef0123456789abcdef".to_owned(),
            sale_id: 7,
            user_id: "ann".to_owned(),
            amount: 1_990,
            payment_token: "tok_ok".to_owned(),
            pay_by: at,
            give_up_at: at + chrono::Duration::seconds(60),
            requested_at: at,
        }
    }

    fn bytes(request: PaymentRequested) -> Vec<u8> {
        serde_json::to_vec(&request.into_envelope("trace-1".into())).expect("json")
    }

    #[test]
    fn a_payment_request_decodes_with_its_trace() {
        let (request, trace) = request(Some(&bytes(requested()))).expect("decodes");
        assert_eq!(request, Request::Payment(requested()));
        assert_eq!(trace, "trace-1");
        assert_eq!(request.order_id(), "7-0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn a_refund_request_decodes() {
        let refund = RefundRequested {
            order_id: "7-0123456789abcdef0123456789abcdef".to_owned(),
            sale_id: 7,
            user_id: "ann".to_owned(),
            reason: "cancelled_by_shopper".to_owned(),
            requested_at: DateTime::from_timestamp_millis(1).expect("time"),
        };
        let payload = serde_json::to_vec(&refund.clone().into_envelope("t".into())).expect("json");
        assert_eq!(
            request(Some(&payload)).expect("decodes").0,
            Request::Refund(refund)
        );
    }

    #[test]
    fn garbled_unknown_or_invalid_messages_say_why_they_are_poison() {
        let poison = |payload: &[u8]| request(Some(payload)).expect_err("poison");
        assert!(request(None).is_err());
        assert!(poison(b"not json").starts_with("undecodable"));
        let mut envelope = requested().into_envelope("t".into());
        envelope.kind = "order.admitted".into();
        let other = serde_json::to_vec(&envelope).expect("json");
        assert!(poison(&other).contains("unknown event type"));
        envelope.kind = PAYMENT_REQUESTED.into();
        envelope.version = 2;
        assert!(poison(&serde_json::to_vec(&envelope).expect("json")).contains("version"));
        let zero = PaymentRequested {
            amount: 0,
            ..requested()
        };
        assert!(poison(&bytes(zero)).contains("amount"));
        let wrong_sale = PaymentRequested {
            sale_id: 8,
            ..requested()
        };
        assert!(poison(&bytes(wrong_sale)).contains("not of sale"));
        let no_token = PaymentRequested {
            payment_token: String::new(),
            ..requested()
        };
        assert!(poison(&bytes(no_token)).contains("payment_token"));
        let backwards = PaymentRequested {
            give_up_at: requested().pay_by - chrono::Duration::seconds(1),
            ..requested()
        };
        assert!(poison(&bytes(backwards)).contains("give_up_at"));
    }
}
