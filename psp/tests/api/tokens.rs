//! What each test token makes of a charge over HTTP: declined, invalid, slow (recorded at
//! once, answered late), flaky (503 twice, then paid), and the random failure share.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use crate::helpers::{Options, charge_body, spawn_psp, spawn_psp_with};

#[tokio::test]
async fn a_charge_with_tok_declined_is_402_declined_card_declined_and_recorded() {
    let psp = spawn_psp().await;

    let reply = psp
        .charge(Some("k1"), &charge_body("tok_declined", "ord-1", 500))
        .await;
    let found = psp.get(&format!("/charges/{}", reply.id())).await;

    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.text);
    assert_eq!(reply.json["status"], "declined");
    assert_eq!(reply.json["failure_code"], "card_declined");
    assert_eq!(
        reply.code(),
        "card_declined",
        "the error of the contract too"
    );
    assert!(reply.id().starts_with("ch_"));
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.json["status"], "declined");
}

#[tokio::test]
async fn any_other_token_is_402_invalid_token() {
    let psp = spawn_psp().await;

    let reply = psp
        .charge(Some("k1"), &charge_body("tok_visa", "ord-1", 500))
        .await;

    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.text);
    assert_eq!(reply.code(), "invalid_token");
    assert_eq!(reply.json["failure_code"], "invalid_token");
    assert_eq!(reply.json["status"], "declined");
}

#[tokio::test]
async fn a_slow_charge_is_recorded_at_arrival_found_by_its_key_and_answered_after_slow_ms() {
    let psp = spawn_psp_with(Options {
        slow_ms: 1_500,
        ..Options::default()
    })
    .await;
    let body = charge_body("tok_slow", "ord-1", 100);
    let started = Instant::now();

    let (answer, looked_up) = tokio::join!(psp.charge(Some("slow-1"), &body), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reply = psp.get("/charges?idempotency_key=slow-1").await;
        (reply, started.elapsed())
    });

    let (found, found_after) = looked_up;
    assert_eq!(
        found.status,
        StatusCode::OK,
        "recorded at arrival: {}",
        found.text
    );
    assert_eq!(found.json["status"], "succeeded");
    assert!(
        found_after < Duration::from_millis(1_500),
        "{found_after:?}"
    );
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.id(), found.id());
    assert!(started.elapsed() >= Duration::from_millis(1_500));
}

#[tokio::test]
async fn a_second_request_under_a_slow_charges_key_waits_for_the_first_answer_and_gets_it() {
    let psp = spawn_psp_with(Options {
        slow_ms: 1_000,
        ..Options::default()
    })
    .await;
    let body = charge_body("tok_slow", "ord-1", 100);
    let started = Instant::now();

    let (first, second) = tokio::join!(psp.charge(Some("slow-1"), &body), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reply = psp.charge(Some("slow-1"), &body).await;
        (reply, started.elapsed())
    });

    let (second, second_after) = second;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.id(), first.id());
    assert!(second.replayed());
    assert!(
        second_after >= Duration::from_millis(1_000),
        "not answered before the first: {second_after:?}"
    );
}

#[tokio::test]
async fn a_flaky_token_is_503_twice_per_reference_recording_nothing_then_succeeds() {
    let psp = spawn_psp().await;
    let body = charge_body("tok_flaky", "ord-1", 100);

    let first = psp.charge(Some("ord-1:1"), &body).await;
    let lookup = psp.get("/charges?idempotency_key=ord-1%3A1").await;
    let second = psp.charge(Some("ord-1:2"), &body).await;
    let third = psp.charge(Some("ord-1:3"), &body).await;
    let other_order = psp
        .charge(Some("ord-2:1"), &charge_body("tok_flaky", "ord-2", 100))
        .await;

    for reply in [&first, &second, &other_order] {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text
        );
        assert_eq!(reply.code(), "provider_unavailable");
        assert_eq!(reply.headers["retry-after"], "1");
    }
    assert_eq!(lookup.status, StatusCode::NOT_FOUND);
    assert_eq!(lookup.code(), "no_such_charge");
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.text);
    let listed = psp.get("/charges?reference=ord-1").await;
    assert_eq!(listed.json["charges"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_failure_share_of_one_answers_every_new_charge_503_and_records_nothing() {
    let psp = spawn_psp_with(Options {
        failure_share: 1.0,
        ..Options::default()
    })
    .await;

    let mut statuses = Vec::new();
    for i in 0..5 {
        let reply = psp
            .charge(Some(&format!("k{i}")), &charge_body("tok_ok", "ord-1", 100))
            .await;
        statuses.push((reply.status, reply.code().to_owned()));
    }

    for (status, code) in statuses {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code, "provider_unavailable");
    }
    assert_eq!(psp.get("/charges").await.json["charges"], json!([]));
}
