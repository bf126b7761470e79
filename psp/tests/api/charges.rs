//! `POST /charges` over HTTP: a charge that succeeds, the idempotency key's replay and
//! refusal, the latency, and refusals of bad input.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Options, charge_body, spawn_psp, spawn_psp_with, unique};

#[tokio::test]
async fn a_charge_with_tok_ok_is_201_succeeded_echoing_the_request() {
    let psp = spawn_psp().await;
    let key = unique("key-");

    let reply = psp
        .charge(Some(&key), &charge_body("tok_ok", "ord-1", 1200))
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let charge = &reply.json;
    assert!(reply.id().starts_with("ch_"), "{charge}");
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(charge["amount"], 1200);
    assert_eq!(charge["currency"], "usd");
    assert_eq!(charge["reference"], "ord-1");
    assert_eq!(charge["idempotency_key"], key.as_str());
    assert_eq!(charge["refunded"], false);
    assert!(
        charge["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{charge}"
    );
    assert!(charge.get("failure_code").is_none(), "{charge}");
    assert!(!reply.replayed());
}

#[tokio::test]
async fn the_same_key_and_body_replay_the_stored_answer_with_the_same_id_and_status() {
    let psp = spawn_psp().await;
    let paid = charge_body("tok_ok", "ord-1", 1200);
    let declined = charge_body("tok_declined", "ord-2", 1200);

    let first = psp.charge(Some("k-paid"), &paid).await;
    let again = psp.charge(Some("k-paid"), &paid).await;
    let first_declined = psp.charge(Some("k-declined"), &declined).await;
    let again_declined = psp.charge(Some("k-declined"), &declined).await;
    // The currency left out or spelled out is the same request.
    let spelled_out = psp
        .charge(
            Some("k-paid"),
            &json!({"amount": 1200, "currency": "USD", "payment_token": "tok_ok", "reference": "ord-1"}),
        )
        .await;
    let listed = psp.get("/charges?reference=ord-1").await;

    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.id(), first.id());
    assert!(again.replayed());
    assert_eq!(again_declined.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(again_declined.id(), first_declined.id());
    assert_eq!(spelled_out.id(), first.id());
    assert_eq!(listed.json["charges"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_charges_nothing_more() {
    let psp = spawn_psp().await;
    psp.charge(Some("k1"), &charge_body("tok_ok", "ord-1", 1200))
        .await;

    let other_amount = psp
        .charge(Some("k1"), &charge_body("tok_ok", "ord-1", 1300))
        .await;
    let other_reference = psp
        .charge(Some("k1"), &charge_body("tok_ok", "ord-2", 1200))
        .await;
    let all = psp.get("/charges").await;

    for reply in [other_amount, other_reference] {
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.text
        );
        assert_eq!(reply.code(), "idempotency_key_reused");
    }
    assert_eq!(all.json["charges"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_charge_without_an_idempotency_key_is_400_and_charges_nothing() {
    let psp = spawn_psp().await;

    let missing = psp.charge(None, &charge_body("tok_ok", "ord-1", 100)).await;
    let empty = psp
        .charge(Some(""), &charge_body("tok_ok", "ord-1", 100))
        .await;
    let long = psp
        .charge(Some(&"k".repeat(256)), &charge_body("tok_ok", "ord-1", 100))
        .await;
    let all = psp.get("/charges").await;

    for reply in [missing, empty, long] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
        assert_eq!(reply.code(), "invalid_request");
        assert!(reply.text.contains("Idempotency-Key"), "{}", reply.text);
    }
    assert_eq!(all.json["charges"], json!([]));
}

#[tokio::test]
async fn a_malformed_charge_body_is_400_naming_what_is_wrong_and_charges_nothing() {
    let psp = spawn_psp().await;
    let cases = [
        ("{", "invalid JSON body"),
        (r#"{"amount": 1, "payment_token": "tok_ok"}"#, "reference"),
        (
            r#"{"amount": "1", "payment_token": "tok_ok", "reference": "r"}"#,
            "amount",
        ),
        (
            r#"{"amount": -1, "payment_token": "tok_ok", "reference": "r"}"#,
            "amount",
        ),
        (
            r#"{"amount": 0, "payment_token": "tok_ok", "reference": "r"}"#,
            "amount",
        ),
        (
            r#"{"amount": 1, "payment_token": "tok_ok", "reference": "r", "tip": 1}"#,
            "tip",
        ),
        (
            r#"{"amount": 1, "currency": "dollars", "payment_token": "tok_ok", "reference": "r"}"#,
            "currency",
        ),
        (
            r#"{"amount": 1, "payment_token": "tok_ok", "reference": ""}"#,
            "reference",
        ),
        ("", "invalid JSON body"),
    ];

    for (i, (body, names)) in cases.into_iter().enumerate() {
        let reply = psp
            .send(
                Method::POST,
                "/charges",
                &[("idempotency-key", &format!("k{i}"))],
                Some(body.to_owned()),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_request", "{body}");
        assert!(
            reply.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(names)),
            "{body}: {}",
            reply.text
        );
    }
    let too_large = psp
        .send(
            Method::POST,
            "/charges",
            &[("idempotency-key", "big")],
            Some(format!(r#"{{"reference": "{}"}}"#, "r".repeat(20_000))),
        )
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.code(), "payload_too_large");
    assert_eq!(psp.get("/charges").await.json["charges"], json!([]));
}

#[tokio::test]
async fn every_api_answer_waits_the_configured_latency_first() {
    let psp = spawn_psp_with(Options {
        latency_ms: 300,
        ..Options::default()
    })
    .await;

    let mut took = Vec::new();
    for path in ["/charges", "/charges/ch_none"] {
        let started = Instant::now();
        psp.get(path).await;
        took.push(started.elapsed());
    }
    let started = Instant::now();
    psp.charge(None, &charge_body("tok_ok", "ord-1", 1)).await;
    took.push(started.elapsed());

    for elapsed in took {
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    }
}
