//! The saga's decision table, as pure functions: from a payment's row, the next step; from
//! what the provider or Redis answered, the payment's next row. [`crate::worker`] runs the
//! steps (the calls and the writes); everything it decides is decided here.
//!
//! ```text
//! pending ── past give_up_at ──────────────────────────────────────────▶ giving_up
//! pending ── outcome unknown: look the key up ── succeeded ──────────────▶ charged
//!                                           ├── declined ───────────────▶ declined
//!                                           └── not found: charge again
//! pending ── charge (attempt+1, key written first) ── 2xx ──────────────▶ charged
//!                                                  ├── 402/4xx ─────────▶ declined
//!                                                  └── timeout/5xx: retry (backoff, ≤ give_up_at)
//! charged ── Redis pay ── closed/already ───────────────────────────────▶ completed
//!                     └── final/window_closed/not_found (not paid) ────▶ refunding (late)
//! declined ── Redis cancel payment_declined ────────────────────────────▶ failed
//! giving_up ── Redis expire, look the key up ── succeeded ──────────────▶ refunding (late)
//!                                           └── otherwise ─────────────▶ given_up
//! refunding ── provider refund (key refund:<order>) ── then, for a cancel, Redis refunded ▶ refunded
//! completed/failed/given_up/refunded ── announce the outcome once ──────▶ (done)
//! ```
//! A refund asked for a payment still in flight is remembered (`refund_cause` cancel): the
//! payment goes on, and where it would end failed or given up (no money taken, yet the
//! order is being cancelled as paid) it goes `refunding` instead, to end the order.

use crate::payment::{Payment, RefundCause, Status, charge_key};

/// Reason of a refund whose charge landed after its order ended.
pub const ORDER_ALREADY_ENDED: &str = "order_already_ended";

/// Reason of an order expired, and of a charge refunded, because the provider never answered
/// in time.
pub const PAYMENT_UNANSWERED: &str = "payment_unanswered";

/// Reason of an order cancelled because its charge was declined.
pub const PAYMENT_DECLINED: &str = "payment_declined";

/// What to do next with a payment this instance holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Pending past its `give_up_at`: mark it `giving_up`.
    GiveUp,
    /// Pending with a charge call of unknown outcome: look it up by this key first.
    LookUp(String),
    /// Pending: make charge attempt number `.0` (the key is written before the call).
    Charge(u32),
    /// Charged: mark the order paid in Redis.
    Pay,
    /// Declined: cancel the order in Redis (reason `payment_declined`).
    Cancel,
    /// Giving up: expire the order in Redis, then look up the outstanding key, if any.
    Expire(Option<String>),
    /// Refunding: give back the provider's charge `.0`.
    Refund(String),
    /// Refunding, the money back (or none taken): end the order as the cause says, then
    /// `refunded`.
    EndRefund(RefundCause),
    /// Final, outcome not announced yet: announce it.
    Announce,
    /// Nothing left to do.
    Done,
}

/// The next step of `payment`; `overdue` says whether its `give_up_at` has passed.
pub fn next_step(payment: &Payment, overdue: bool) -> Step {
    match payment.status {
        Status::Pending if overdue => Step::GiveUp,
        Status::Pending => match payment.outstanding_key() {
            Some(key) => Step::LookUp(key.to_owned()),
            None => Step::Charge(payment.attempts + 1),
        },
        Status::Charged => Step::Pay,
        Status::Declined => Step::Cancel,
        Status::GivingUp => Step::Expire(payment.outstanding_key().map(str::to_owned)),
        Status::Refunding => match (&payment.provider_ref, &payment.refund_ref) {
            (Some(charge), None) => Step::Refund(charge.clone()),
            _ => Step::EndRefund(payment.refund_cause.unwrap_or(RefundCause::Late)),
        },
        _ if !payment.published => Step::Announce,
        _ => Step::Done,
    }
}

/// What the provider answered to a charge call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeReply {
    /// The money was taken: the provider's charge id.
    Succeeded(String),
    /// Refused for good: why (`card_declined`, `invalid_token`, ...).
    Declined(String),
    /// No answer we can act on (timeout, refused connection, 5xx, a charge still processing):
    /// the outcome is unknown, and looked up before any other attempt.
    Unknown(String),
}

/// What a lookup by idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A charge that succeeded: its id.
    Succeeded(String),
    /// A charge that was declined: why.
    Declined(String),
    /// No charge under that key (or none that is final yet).
    Nothing,
}

/// What one of Redis's order ops answered (`lua/order_close.lua`, without the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAnswer {
    /// Ended now as asked.
    Closed,
    /// Ended that way before.
    Already,
    /// Ended another way (or, for `pay`, being refunded).
    Final,
    /// `expire` before the order is due.
    NotDue,
    /// `pay` past the order's deadline.
    WindowClosed,
    /// No such order (any more) in Redis.
    NotFound,
}

/// What to do after a step: go on with the next one, try again later, or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Written; go on at once with the next step.
    Go,
    /// A passing failure: written with `retries + 1`, tried again after a backoff.
    Retry,
}

/// A payment's next row and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The row to write.
    pub payment: Payment,
    /// Then.
    pub then: Then,
}

fn go(mut payment: Payment) -> Move {
    payment.retries = 0;
    Move {
        payment,
        then: Then::Go,
    }
}

/// The same payment, tried again after a backoff.
pub fn retry(payment: &Payment) -> Move {
    let mut payment = payment.clone();
    payment.retries = payment.retries.saturating_add(1);
    Move {
        payment,
        then: Then::Retry,
    }
}

/// The row written before charge attempt `attempt`: its key is on record before the call, so
/// whatever happens to the call, the key is looked up before any other attempt.
pub fn before_charge(payment: &Payment, attempt: u32) -> Payment {
    let mut next = payment.clone();
    next.attempts = attempt;
    next.charge_key = Some(charge_key(&payment.order_id, attempt));
    next
}

/// Pending past its `give_up_at`: giving up.
pub fn give_up(payment: &Payment) -> Move {
    go(with_status(payment, Status::GivingUp))
}

/// After a charge call.
pub fn after_charge(payment: &Payment, reply: &ChargeReply) -> Move {
    match reply {
        ChargeReply::Succeeded(id) => go(charged(payment, id)),
        ChargeReply::Declined(code) => go(declined(payment, code)),
        ChargeReply::Unknown(_) => retry(payment),
    }
}

/// What a pending payment's lookup leads to: a known outcome, or `None` (nothing charged under
/// that key: charge again now).
pub fn after_lookup(payment: &Payment, found: &Found) -> Option<Move> {
    match found {
        Found::Succeeded(id) => Some(go(charged(payment, id))),
        Found::Declined(code) => Some(go(declined(payment, code))),
        Found::Nothing => None,
    }
}

/// What a charged payment does after Redis answered `pay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPay {
    /// The order is paid.
    Done(Move),
    /// The order ended without being paid: refund.
    Refund(Move),
    /// Past the order's deadline: expire it (it is still open), then refund.
    ExpireThenRefund(Move),
    /// The record is gone from Redis: whether the order was paid is MySQL's to say
    /// ([`after_pay_not_found`]).
    AskMysql,
    /// Not an answer `pay` gives: try again later.
    Retry(Move),
}

/// After Redis answered `pay` for a charged payment.
pub fn after_pay(payment: &Payment, answer: OrderAnswer) -> AfterPay {
    match answer {
        OrderAnswer::Closed | OrderAnswer::Already => {
            AfterPay::Done(go(with_status(payment, Status::Completed)))
        }
        OrderAnswer::Final => AfterPay::Refund(go(refund(payment, ORDER_ALREADY_ENDED))),
        OrderAnswer::WindowClosed => {
            AfterPay::ExpireThenRefund(go(refund(payment, ORDER_ALREADY_ENDED)))
        }
        OrderAnswer::NotFound => AfterPay::AskMysql,
        OrderAnswer::NotDue => AfterPay::Retry(retry(payment)),
    }
}

/// After `pay` found no record, with the order's status in MySQL (`None`: no row): a paid
/// order is completed (the record was forgotten after the pay landed), any other refunded.
pub fn after_pay_not_found(payment: &Payment, mysql_status: Option<&str>) -> Move {
    match mysql_status {
        Some("paid") => go(with_status(payment, Status::Completed)),
        _ => go(refund(payment, ORDER_ALREADY_ENDED)),
    }
}

/// After Redis answered the `cancel` of a declined payment: the payment failed, however the
/// order had ended.
pub fn after_cancel(payment: &Payment, answer: OrderAnswer) -> Move {
    match answer {
        OrderAnswer::NotDue | OrderAnswer::WindowClosed => retry(payment),
        _ => go(no_charge_end(payment, Status::Failed, None)),
    }
}

/// After Redis answered the `expire` of a payment given up: `None` when it is not due yet by
/// Redis's clock (a skew between clocks: try again later), else go on with the lookup.
pub fn after_expire(payment: &Payment, answer: OrderAnswer) -> Option<Move> {
    match answer {
        OrderAnswer::NotDue => Some(retry(payment)),
        _ => None,
    }
}

/// After a payment given up had its outstanding key looked up (`Found::Nothing` when it had
/// none): a charge that succeeded after all is refunded, otherwise it is given up.
pub fn after_give_up(payment: &Payment, found: &Found) -> Move {
    match found {
        Found::Succeeded(id) => go(refund(&charged(payment, id), PAYMENT_UNANSWERED)),
        Found::Declined(code) => go(no_charge_end(payment, Status::GivenUp, Some(code))),
        Found::Nothing => go(no_charge_end(
            payment,
            Status::GivenUp,
            Some(PAYMENT_UNANSWERED),
        )),
    }
}

/// What a refund call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundReply {
    /// The money is back: the provider's refund id.
    Refunded(String),
    /// The provider refuses for good (the charge is unknown or was never taken): status and
    /// code. Not expected for a charge it said succeeded; left for an operator.
    Refused(String),
    /// No answer we can act on: try again (the same key gives the same refund).
    Unknown(String),
}

/// After a refund call.
pub fn after_refund(payment: &Payment, reply: &RefundReply) -> Move {
    match reply {
        RefundReply::Refunded(id) => {
            let mut next = payment.clone();
            next.refund_ref = Some(id.clone());
            go(next)
        }
        RefundReply::Refused(_) | RefundReply::Unknown(_) => retry(payment),
    }
}

/// After the money is back (or none was taken) and the order ended as the cause asks.
pub fn refunded(payment: &Payment) -> Move {
    let mut next = with_status(payment, Status::Refunded);
    // Nothing to announce when nothing was charged (a zero-amount or manager-paid order
    // cancelled): the order's own `order.cancelled` tells it.
    next.published = payment.provider_ref.is_none();
    go(next)
}

/// After the outcome was announced.
pub fn announced(payment: &Payment) -> Move {
    let mut next = payment.clone();
    next.published = true;
    go(next)
}

/// Whether `moved` may go unwritten, carried by the next step's write instead (one commit
/// fewer per payment): only a charge found or made under the key `written` has on record.
/// Should the process die before the next write, the row still says "pending, attempt
/// outstanding under this key", and whoever claims it looks the key up and finds the same
/// charge (never charging again); a Redis `pay` made meanwhile answers `already`. Everything
/// else (the key before the call, a decline, every final row) is written before going on.
pub fn may_hold_back(written: &Payment, moved: &Move) -> bool {
    moved.then == Then::Go
        && moved.payment.status == Status::Charged
        && written.status == Status::Pending
        && written.charge_key.is_some()
        && written.charge_key == moved.payment.charge_key
        && written.attempts == moved.payment.attempts
        && moved.payment.provider_ref.is_some()
}

/// The event type announcing a final payment, `None` for one not final.
pub fn outcome_kind(status: Status) -> Option<&'static str> {
    match status {
        Status::Completed => Some(flashgate_events::PAYMENT_COMPLETED),
        Status::Failed | Status::GivenUp => Some(flashgate_events::PAYMENT_FAILED),
        Status::Refunded => Some(flashgate_events::PAYMENT_REFUNDED),
        _ => None,
    }
}

fn with_status(payment: &Payment, status: Status) -> Payment {
    let mut next = payment.clone();
    next.status = status;
    // Every final status is announced once.
    next.published = false;
    next
}

fn charged(payment: &Payment, id: &str) -> Payment {
    let mut next = with_status(payment, Status::Charged);
    next.provider_ref = Some(id.to_owned());
    next
}

fn declined(payment: &Payment, code: &str) -> Payment {
    let mut next = with_status(payment, Status::Declined);
    next.failure_code = Some(code.to_owned());
    next
}

/// Refunding a charge that outlived its order (the cause stays `cancel` when a cancel of the
/// paid order asked for the refund first: the order then still waits for its end).
fn refund(payment: &Payment, reason: &str) -> Payment {
    let mut next = with_status(payment, Status::Refunding);
    next.refund_cause = Some(payment.refund_cause.unwrap_or(RefundCause::Late));
    next.refund_reason = Some(payment.refund_reason.clone().unwrap_or(reason.to_owned()));
    next
}

/// Ends a payment that took no money as `status` — unless a cancel of the order as paid is
/// waiting (the order was paid some other way): then it goes `refunding`, with nothing to
/// refund, to end the order.
fn no_charge_end(payment: &Payment, status: Status, code: Option<&str>) -> Payment {
    let status = match payment.refund_cause {
        Some(RefundCause::Cancel) => Status::Refunding,
        _ => status,
    };
    let mut next = with_status(payment, status);
    if let Some(code) = code {
        next.failure_code = Some(code.to_owned());
    }
    next
}

#[cfg(test)]
mod tests;
