//! Every step of an order after its admission — ended cancelled, expired or paid, a payment
//! started, a paid order's refund asked for and finished — with one `EVALSHA` of
//! `lua/order_close.lua`, and what the script answered, as a value.

use chrono::{DateTime, Utc};
use flashgate_events::OrderEnd;
use fred::prelude::{Pool, Value};

use crate::app::App;
use crate::keys::{self, SaleKeys};
use crate::orders::status::sale_of;
use crate::scripts::{Script, int, reply_int, reply_text, unexpected_reply};

/// An order's record in Redis, as the script read or left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `held` or `paying` (open), `paid`, `refunding`, `cancelled` or `expired`.
    pub state: String,
    /// When it ended, or its payment or refund was asked for (`None` while held).
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended or is refunded ("" while held; the amount charged while paying).
    pub reason: String,
    /// The buyer.
    pub user_id: String,
    /// Its units.
    pub quantity: u32,
    /// Until when it may be paid (`None` for orders from before payment windows).
    pub pay_by: Option<DateTime<Utc>>,
}

/// What `lua/order_close.lua` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing {
    /// Ended now, as asked.
    Closed(Record),
    /// It had ended that way before: the same answer again.
    Already(Record),
    /// It had ended another way.
    Final(Record),
    /// Expiry asked before its `pay_by`.
    NotDue(Record),
    /// Payment asked at or after its `pay_by`.
    WindowClosed(Record),
    /// No such open (or recently ended) order, or not the caller's.
    NotFound,
    /// The Idempotency-Key names another request.
    KeyReused,
    /// A payment asked again under the key that started it: the order as it is now.
    Replayed(Record),
    /// A paid order's cancel: its refund is asked for (now or before).
    Refunding(Record),
}

/// One end asked for.
#[derive(Debug, Clone, Copy)]
pub struct CloseRequest<'a> {
    /// The order.
    pub order_id: &'a str,
    /// How it is to end.
    pub end: OrderEnd,
    /// The shopper asking (only their own order), or `None` (a manager, the sweeper, the
    /// back office).
    pub caller: Option<&'a str>,
    /// Why, one line.
    pub reason: &'a str,
    /// Trace id carried into the event.
    pub trace_id: &'a str,
    /// The caller's `Idempotency-Key` and how long it names this request, in seconds.
    pub idempotency: Option<(&'a str, u64)>,
    /// How long after the end the sweeper's own pass over the order's give-backs is due:
    /// longer than any request still in flight may take to land its redeem or use.
    pub settle_ms: u64,
}

fn operation(end: OrderEnd) -> &'static str {
    match end {
        OrderEnd::Cancelled => "cancel",
        OrderEnd::Expired => "expire",
        OrderEnd::Paid => "pay",
    }
}

fn millis(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}

fn record(reply: &[Value]) -> Record {
    let number = |index| {
        reply
            .get(index)
            .and_then(Value::as_string)
            .unwrap_or_default()
    };
    Record {
        state: reply_text(reply, 1),
        ended_at: millis(&number(2)),
        reason: reply_text(reply, 3),
        user_id: reply_text(reply, 4),
        quantity: u32::try_from(reply_int(reply, 5)).unwrap_or(0),
        pay_by: millis(&number(7)),
    }
}

/// Parses the script's reply.
fn parse(reply: &[Value]) -> Result<Closing, fred::error::Error> {
    Ok(match reply_text(reply, 0).as_str() {
        "closed" => Closing::Closed(record(reply)),
        "already" => Closing::Already(record(reply)),
        "final" => Closing::Final(record(reply)),
        "not_due" => Closing::NotDue(record(reply)),
        "window_closed" => Closing::WindowClosed(record(reply)),
        "replayed" => Closing::Replayed(record(reply)),
        "refunding" => Closing::Refunding(record(reply)),
        "not_found" => Closing::NotFound,
        "idempotency_key_reused" => Closing::KeyReused,
        other => return Err(unexpected_reply("order_close", other)),
    })
}

/// Runs `lua/order_close.lua` once for `request`. Safe to run again: a second run finds the
/// order ended and answers `Already`. A cancel of a paid order asks for its refund
/// (`Refunding`).
pub async fn close(
    redis: &Pool,
    script: &Script,
    prefix: &str,
    request: &CloseRequest<'_>,
) -> Result<Closing, fred::error::Error> {
    run(
        redis,
        script,
        prefix,
        operation(request.end),
        request,
        0,
        "",
    )
    .await
}

/// Starts the payment of `request.order_id` with the shopper's `token`: the order becomes
/// `paying` and `payment.requested` goes to the outbox (`Closed`); it stays open until its
/// pay_by + `grace_ms`. Nothing to charge: paid at once (`Closed` with state `paid`). The same
/// Idempotency-Key again: `Replayed`. `request.end` is not read.
pub async fn start_payment(
    redis: &Pool,
    script: &Script,
    prefix: &str,
    request: &CloseRequest<'_>,
    token: &str,
    grace_ms: u64,
) -> Result<Closing, fred::error::Error> {
    run(redis, script, prefix, "pay_start", request, grace_ms, token).await
}

/// Finishes a paid order's refund once the provider refunded it: `refunding` → `cancelled`,
/// its units, coupon and points given back (`Closed`); `Already` when it was finished before.
pub async fn refunded(
    redis: &Pool,
    script: &Script,
    prefix: &str,
    order_id: &str,
    trace_id: &str,
    settle_ms: u64,
) -> Result<Closing, fred::error::Error> {
    let request = CloseRequest {
        order_id,
        end: OrderEnd::Cancelled,
        caller: None,
        reason: "",
        trace_id,
        idempotency: None,
        settle_ms,
    };
    run(redis, script, prefix, "refunded", &request, 0, "").await
}

async fn run(
    redis: &Pool,
    script: &Script,
    prefix: &str,
    op: &str,
    request: &CloseRequest<'_>,
    grace_ms: u64,
    token: &str,
) -> Result<Closing, fred::error::Error> {
    let Some(sale_id) = sale_of(request.order_id) else {
        return Ok(Closing::NotFound);
    };
    let keys = SaleKeys::new(prefix, sale_id);
    let mut names = keys.lifecycle();
    let mut ttl_secs = 0;
    if let Some((key, ttl)) = request.idempotency {
        names.push(keys.idempotency(request.caller.unwrap_or_default(), key));
        ttl_secs = ttl;
    }
    let args: Vec<Value> = vec![
        op.into(),
        request.order_id.into(),
        request.caller.unwrap_or_default().into(),
        one_line(request.reason).into(),
        request.trace_id.into(),
        keys::restock_channel(prefix).into(),
        int(sale_id),
        int(request.settle_ms),
        int(ttl_secs),
        int(grace_ms),
        token.into(),
    ];
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    parse(&reply)
}

/// What one `expire_due` batch did: `(expired, due)`, the ids of the orders expired now and
/// how many due ones were found (a full batch means more may be due).
pub async fn expire_due(
    app: &App,
    sale_id: u64,
    batch: u64,
    reason: &str,
    trace_id: &str,
) -> Result<(Vec<String>, u64), fred::error::Error> {
    let prefix = app.prefix();
    let keys = SaleKeys::new(prefix, sale_id);
    let args: Vec<Value> = vec![
        "expire_due".into(),
        int(batch),
        "".into(),
        one_line(reason).into(),
        trace_id.into(),
        keys::restock_channel(prefix).into(),
        int(sale_id),
        int(settle_ms(app)),
    ];
    let script = &app.scripts.order_close;
    let reply: Vec<Value> = script.run(&app.redis, keys.lifecycle(), args).await?;
    match reply_text(&reply, 0).as_str() {
        "expired" => Ok((
            (3..reply.len()).map(|at| reply_text(&reply, at)).collect(),
            u64::try_from(reply_int(&reply, 2)).unwrap_or(0),
        )),
        other => Err(unexpected_reply("order_close", other)),
    }
}

/// How long after an end the sweeper's own pass over its give-backs is due: twice the
/// request timeout, so a redeem or a use reserved before the end has landed by then.
pub fn settle_ms(app: &App) -> u64 {
    app.settings.gateway.request_timeout_ms.saturating_mul(2)
}

/// The reason as one line: the record keeps it as its last line.
fn one_line(reason: &str) -> String {
    reason.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripts::tests::reply;

    #[test]
    fn a_reply_names_the_record_as_the_script_left_it() {
        let closed = parse(&reply(&[
            "closed",
            "cancelled",
            "1700000000123",
            "cancelled_by_shopper",
            "ann",
            "2",
            "1699999999000",
            "1700000599000",
        ]))
        .unwrap();
        let Closing::Closed(record) = closed else {
            panic!("{closed:?}")
        };
        assert_eq!(record.state, "cancelled");
        assert_eq!(record.quantity, 2);
        assert_eq!(record.user_id, "ann");
        assert_eq!(
            record.ended_at.map(|t| t.timestamp_millis()),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            record.pay_by.map(|t| t.timestamp_millis()),
            Some(1_700_000_599_000)
        );
        assert_eq!(parse(&reply(&["not_found"])).unwrap(), Closing::NotFound);
        assert!(parse(&reply(&["what"])).is_err());
    }

    #[test]
    fn a_reason_stays_on_one_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }
}
