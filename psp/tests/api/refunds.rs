//! `POST /charges/{id}/refund` over HTTP: a charge is refunded at most once, in full; a
//! declined or unknown charge is refused.

use http::StatusCode;
use serde_json::json;

use crate::helpers::{charge_body, spawn_psp};

#[tokio::test]
async fn a_succeeded_charge_is_refunded_once_and_a_second_refund_returns_the_same_refund() {
    let psp = spawn_psp().await;
    let charge = psp
        .charge(Some("ord-1:1"), &charge_body("tok_ok", "ord-1", 900))
        .await
        .id();

    let first = psp
        .refund(
            &charge,
            Some("refund:ord-1"),
            Some(json!({"reason": "order_already_ended"})),
        )
        .await;
    let same_key = psp.refund(&charge, Some("refund:ord-1"), None).await;
    let no_key = psp.refund(&charge, None, None).await;
    let whole_amount = psp
        .refund(&charge, None, Some(json!({"amount": 900})))
        .await;
    let after = psp.get(&format!("/charges/{charge}")).await;
    // A replay of the charge's key shows it refunded, under its first status.
    let replay = psp
        .charge(Some("ord-1:1"), &charge_body("tok_ok", "ord-1", 900))
        .await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert!(first.id().starts_with("re_"));
    assert_eq!(first.json["charge"], charge.as_str());
    assert_eq!(first.json["amount"], 900);
    assert_eq!(first.json["status"], "succeeded");
    assert_eq!(first.json["reason"], "order_already_ended");
    for again in [same_key, no_key, whole_amount] {
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        assert_eq!(again.id(), first.id());
        assert!(again.replayed());
    }
    assert_eq!(after.json["refunded"], true);
    assert_eq!(after.json["refund"], first.id().as_str());
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.json["refunded"], true);
}

#[tokio::test]
async fn refunding_a_declined_charge_is_409_and_an_unknown_one_404() {
    let psp = spawn_psp().await;
    let declined = psp
        .charge(Some("k1"), &charge_body("tok_declined", "ord-1", 900))
        .await
        .id();

    let refused = psp.refund(&declined, None, None).await;
    let unknown = psp.refund("ch_nope", Some("r1"), None).await;

    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.code(), "charge_not_refundable");
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert_eq!(unknown.code(), "no_such_charge");
}

#[tokio::test]
async fn a_refund_key_used_for_another_charge_is_422_and_a_partial_or_malformed_refund_400() {
    let psp = spawn_psp().await;
    let first = psp
        .charge(Some("k1"), &charge_body("tok_ok", "ord-1", 900))
        .await
        .id();
    let second = psp
        .charge(Some("k2"), &charge_body("tok_ok", "ord-2", 900))
        .await
        .id();
    psp.refund(&first, Some("refund-key"), None).await;

    let reused = psp.refund(&second, Some("refund-key"), None).await;
    let partial = psp
        .refund(&second, None, Some(json!({"amount": 100})))
        .await;
    let unknown_field = psp.refund(&second, None, Some(json!({"amout": 900}))).await;
    let still = psp.get(&format!("/charges/{second}")).await;

    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.text
    );
    assert_eq!(reused.code(), "idempotency_key_reused");
    for reply in [partial, unknown_field] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
        assert_eq!(reply.code(), "invalid_request");
    }
    assert_eq!(still.json["refunded"], false);
}
