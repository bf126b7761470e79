//! The decision table, case by case.

use chrono::DateTime;

use super::*;

fn pending() -> Payment {
    Payment {
        order_id: "7-abc".to_owned(),
        sale_id: 7,
        user_id: "ann".to_owned(),
        amount: 1_990,
        payment_token: "tok_ok".to_owned(),
        status: Status::Pending,
        attempts: 0,
        charge_key: None,
        provider_ref: None,
        failure_code: None,
        refund_ref: None,
        refund_reason: None,
        refund_cause: None,
        retries: 0,
        give_up_at: DateTime::from_timestamp_millis(1_700_000_000_000).expect("time"),
        published: false,
        trace_id: "t".to_owned(),
    }
}

fn status(status: Status) -> Payment {
    Payment {
        status,
        ..pending()
    }
}

fn charged_one() -> Payment {
    Payment {
        status: Status::Charged,
        attempts: 1,
        charge_key: Some("7-abc:1".to_owned()),
        provider_ref: Some("ch_1".to_owned()),
        ..pending()
    }
}

#[test]
fn a_new_payment_is_charged_with_attempt_one_whose_key_is_written_before_the_call() {
    let payment = pending();
    assert_eq!(next_step(&payment, false), Step::Charge(1));
    let before = before_charge(&payment, 1);
    assert_eq!(before.attempts, 1);
    assert_eq!(before.charge_key.as_deref(), Some("7-abc:1"));
    assert_eq!(before.status, Status::Pending);
}

#[test]
fn a_charge_of_unknown_outcome_is_looked_up_before_any_other_attempt() {
    let after_timeout = retry(&before_charge(&pending(), 1)).payment;
    assert_eq!(after_timeout.retries, 1);
    assert_eq!(
        next_step(&after_timeout, false),
        Step::LookUp("7-abc:1".to_owned())
    );
    // Nothing under that key: the next attempt, with a key of its own.
    assert_eq!(after_lookup(&after_timeout, &Found::Nothing), None);
    assert_eq!(
        before_charge(&after_timeout, 2).charge_key.as_deref(),
        Some("7-abc:2")
    );
    // Found: the outcome is known, no other charge.
    let found = after_lookup(&after_timeout, &Found::Succeeded("ch_9".to_owned())).expect("move");
    assert_eq!(found.payment.status, Status::Charged);
    assert_eq!(found.payment.provider_ref.as_deref(), Some("ch_9"));
    assert_eq!(found.payment.retries, 0);
    let found =
        after_lookup(&after_timeout, &Found::Declined("card_declined".into())).expect("move");
    assert_eq!(found.payment.status, Status::Declined);
    assert_eq!(found.payment.failure_code.as_deref(), Some("card_declined"));
}

#[test]
fn a_pending_payment_past_give_up_at_is_given_up_before_anything_else() {
    let outstanding = retry(&before_charge(&pending(), 3)).payment;
    assert_eq!(next_step(&outstanding, true), Step::GiveUp);
    assert_eq!(next_step(&pending(), true), Step::GiveUp);
    let giving_up = give_up(&outstanding).payment;
    assert_eq!(giving_up.status, Status::GivingUp);
    // The order expires, then the outstanding key is looked up.
    assert_eq!(
        next_step(&giving_up, true),
        Step::Expire(Some("7-abc:3".to_owned()))
    );
    assert_eq!(
        next_step(&give_up(&pending()).payment, true),
        Step::Expire(None)
    );
}

#[test]
fn a_charge_reply_decides_charged_declined_or_retry() {
    let payment = before_charge(&pending(), 1);
    let moved = after_charge(&payment, &ChargeReply::Succeeded("ch_1".into()));
    assert_eq!(
        (moved.payment.status, moved.then),
        (Status::Charged, Then::Go)
    );
    assert_eq!(moved.payment.provider_ref.as_deref(), Some("ch_1"));
    let moved = after_charge(&payment, &ChargeReply::Declined("card_declined".into()));
    assert_eq!(
        (moved.payment.status, moved.then),
        (Status::Declined, Then::Go)
    );
    let moved = after_charge(&payment, &ChargeReply::Unknown("timeout".into()));
    assert_eq!(
        (moved.payment.status, moved.then),
        (Status::Pending, Then::Retry)
    );
    assert_eq!(moved.payment.attempts, 1);
}

#[test]
fn a_charged_payment_completes_when_redis_pays_the_order_and_is_refunded_when_it_cannot() {
    let payment = charged_one();
    assert_eq!(next_step(&payment, false), Step::Pay);
    for answer in [OrderAnswer::Closed, OrderAnswer::Already] {
        let AfterPay::Done(moved) = after_pay(&payment, answer) else {
            panic!("{answer:?}")
        };
        assert_eq!(moved.payment.status, Status::Completed);
        assert!(!moved.payment.published);
        assert_eq!(next_step(&moved.payment, false), Step::Announce);
    }
    let AfterPay::Refund(moved) = after_pay(&payment, OrderAnswer::Final) else {
        panic!("final")
    };
    assert_eq!(moved.payment.status, Status::Refunding);
    assert_eq!(moved.payment.refund_cause, Some(RefundCause::Late));
    assert_eq!(
        moved.payment.refund_reason.as_deref(),
        Some(ORDER_ALREADY_ENDED)
    );
    assert_eq!(
        next_step(&moved.payment, false),
        Step::Refund("ch_1".to_owned())
    );
    assert!(matches!(
        after_pay(&payment, OrderAnswer::WindowClosed),
        AfterPay::ExpireThenRefund(m) if m.payment.status == Status::Refunding
    ));
    assert_eq!(
        after_pay(&payment, OrderAnswer::NotFound),
        AfterPay::AskMysql
    );
    assert_eq!(
        after_pay_not_found(&payment, Some("paid")).payment.status,
        Status::Completed
    );
    for other in [None, Some("cancelled"), Some("expired"), Some("confirmed")] {
        assert_eq!(
            after_pay_not_found(&payment, other).payment.status,
            Status::Refunding,
            "{other:?}"
        );
    }
}

#[test]
fn a_declined_payment_cancels_its_order_and_fails_however_the_order_ended() {
    let payment = status(Status::Declined);
    assert_eq!(next_step(&payment, true), Step::Cancel);
    for answer in [
        OrderAnswer::Closed,
        OrderAnswer::Already,
        OrderAnswer::Final,
        OrderAnswer::NotFound,
    ] {
        assert_eq!(
            after_cancel(&payment, answer).payment.status,
            Status::Failed
        );
    }
}

#[test]
fn a_payment_given_up_refunds_a_charge_found_late_and_otherwise_ends_given_up() {
    let payment = Payment {
        status: Status::GivingUp,
        attempts: 2,
        charge_key: Some("7-abc:2".to_owned()),
        ..pending()
    };
    assert!(after_expire(&payment, OrderAnswer::NotDue).is_some());
    assert_eq!(after_expire(&payment, OrderAnswer::Closed), None);
    assert_eq!(after_expire(&payment, OrderAnswer::Final), None);
    let late = after_give_up(&payment, &Found::Succeeded("ch_2".into())).payment;
    assert_eq!(late.status, Status::Refunding);
    assert_eq!(late.provider_ref.as_deref(), Some("ch_2"));
    assert_eq!(late.refund_reason.as_deref(), Some(PAYMENT_UNANSWERED));
    assert_eq!(late.refund_cause, Some(RefundCause::Late));
    let nothing = after_give_up(&payment, &Found::Nothing).payment;
    assert_eq!(nothing.status, Status::GivenUp);
    assert_eq!(nothing.failure_code.as_deref(), Some(PAYMENT_UNANSWERED));
    let declined = after_give_up(&payment, &Found::Declined("card_declined".into())).payment;
    assert_eq!(declined.status, Status::GivenUp);
    assert_eq!(declined.failure_code.as_deref(), Some("card_declined"));
}

#[test]
fn a_refund_gives_the_money_back_once_then_ends_the_order_as_its_cause_says() {
    let cancel = Payment {
        status: Status::Refunding,
        refund_cause: Some(RefundCause::Cancel),
        refund_reason: Some("cancelled_by_shopper".to_owned()),
        ..charged_one()
    };
    assert_eq!(next_step(&cancel, false), Step::Refund("ch_1".to_owned()));
    let unknown = after_refund(&cancel, &RefundReply::Unknown("timeout".into()));
    assert_eq!(unknown.then, Then::Retry);
    let refused = after_refund(&cancel, &RefundReply::Refused("409".into()));
    assert_eq!(refused.then, Then::Retry);
    let back = after_refund(&cancel, &RefundReply::Refunded("re_1".into())).payment;
    assert_eq!(back.refund_ref.as_deref(), Some("re_1"));
    assert_eq!(back.status, Status::Refunding);
    assert_eq!(
        next_step(&back, false),
        Step::EndRefund(RefundCause::Cancel)
    );
    let done = refunded(&back).payment;
    assert_eq!(done.status, Status::Refunded);
    assert_eq!(next_step(&done, false), Step::Announce);
    assert_eq!(
        outcome_kind(done.status),
        Some(flashgate_events::PAYMENT_REFUNDED)
    );
    let late = Payment {
        refund_cause: Some(RefundCause::Late),
        ..back
    };
    assert_eq!(next_step(&late, false), Step::EndRefund(RefundCause::Late));
}

#[test]
fn a_cancel_of_an_order_paid_without_our_charge_ends_the_order_and_announces_nothing() {
    // A refund asked while the charge was still pending, which then was declined or given up.
    let waiting = Payment {
        status: Status::Declined,
        refund_cause: Some(RefundCause::Cancel),
        refund_reason: Some("manager".to_owned()),
        ..pending()
    };
    let moved = after_cancel(&waiting, OrderAnswer::Final).payment;
    assert_eq!(moved.status, Status::Refunding);
    assert_eq!(
        next_step(&moved, false),
        Step::EndRefund(RefundCause::Cancel)
    );
    let done = refunded(&moved).payment;
    assert!(done.published, "nothing was charged: nothing to announce");
    assert_eq!(next_step(&done, false), Step::Done);
    let giving_up = Payment {
        status: Status::GivingUp,
        ..waiting.clone()
    };
    assert_eq!(
        after_give_up(&giving_up, &Found::Nothing).payment.status,
        Status::Refunding
    );
    // A charge made meanwhile keeps the cancel's cause and reason.
    let charged = Payment {
        status: Status::Charged,
        provider_ref: Some("ch_1".to_owned()),
        ..waiting
    };
    let AfterPay::Refund(moved) = after_pay(&charged, OrderAnswer::Final) else {
        panic!("refund")
    };
    assert_eq!(moved.payment.refund_cause, Some(RefundCause::Cancel));
    assert_eq!(moved.payment.refund_reason.as_deref(), Some("manager"));
}

#[test]
fn every_final_payment_is_announced_once_under_its_type() {
    assert_eq!(outcome_kind(Status::Completed), Some("payment.completed"));
    assert_eq!(outcome_kind(Status::Failed), Some("payment.failed"));
    assert_eq!(outcome_kind(Status::GivenUp), Some("payment.failed"));
    assert_eq!(outcome_kind(Status::Refunded), Some("payment.refunded"));
    assert_eq!(outcome_kind(Status::Pending), None);
    let completed = status(Status::Completed);
    assert_eq!(next_step(&completed, false), Step::Announce);
    let done = announced(&completed).payment;
    assert_eq!(next_step(&done, false), Step::Done);
}

#[test]
fn only_a_charge_found_under_the_key_on_record_may_wait_for_the_next_write() {
    let keyed = before_charge(&pending(), 1);
    // Charged under the key written before the call: the lookup finds it again after a crash.
    let charged = after_charge(&keyed, &ChargeReply::Succeeded("ch_1".to_owned()));
    assert!(may_hold_back(&keyed, &charged));
    let found = after_lookup(&keyed, &Found::Succeeded("ch_1".to_owned())).expect("a move");
    assert!(may_hold_back(&keyed, &found));
    // A decline, a retry, or a row with no key on record is written before going on.
    let declined = after_charge(&keyed, &ChargeReply::Declined("card_declined".to_owned()));
    assert!(!may_hold_back(&keyed, &declined));
    let unknown = after_charge(&keyed, &ChargeReply::Unknown("timeout".to_owned()));
    assert!(!may_hold_back(&keyed, &unknown));
    assert!(!may_hold_back(&pending(), &charged));
    // The key written for another attempt than the one charged: written first.
    let other = before_charge(&keyed, 2);
    assert!(!may_hold_back(&other, &charged));
    // Whatever follows the charged row (paid, refunding, final) is written.
    let paid = match after_pay(&charged_one(), OrderAnswer::Closed) {
        AfterPay::Done(moved) => moved,
        other => panic!("{other:?}"),
    };
    assert!(!may_hold_back(&charged_one(), &paid));
    assert!(!may_hold_back(&keyed, &paid));
}
