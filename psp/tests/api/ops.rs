//! `/healthz`, `/readyz` and `/metrics`, and the answers to routes and methods that do not
//! exist.

use http::{Method, StatusCode};

use crate::helpers::{charge_body, spawn_psp};

#[tokio::test]
async fn health_and_readiness_answer_200_and_metrics_count_charges_refunds_and_requests() {
    let psp = spawn_psp().await;
    let paid = psp
        .charge(Some("k1"), &charge_body("tok_ok", "ord-1", 10))
        .await;
    psp.charge(Some("k1"), &charge_body("tok_ok", "ord-1", 10))
        .await;
    psp.charge(Some("k2"), &charge_body("tok_declined", "ord-2", 10))
        .await;
    psp.refund(&paid.id(), None, None).await;

    let health = psp.get("/healthz").await;
    let ready = psp.get("/readyz").await;
    let metrics = psp.get("/metrics").await;

    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json["status"], "ready");
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "flashgate_psp_charges_total{outcome=\"succeeded\"} 1",
        "flashgate_psp_charges_total{outcome=\"replayed\"} 1",
        "flashgate_psp_charges_total{outcome=\"card_declined\"} 1",
        "flashgate_psp_refunds_total{outcome=\"refunded\"} 1",
        "flashgate_psp_requests_total{route=\"charge_create\",status=\"201\"} 2",
        "flashgate_psp_requests_total{route=\"charge_create\",status=\"402\"} 1",
        "flashgate_psp_requests_total{route=\"charge_refund\",status=\"200\"} 1",
        "flashgate_psp_charges_kept 2",
        "flashgate_psp_refunds_kept 1",
        // The scrape itself is in flight.
        "flashgate_psp_in_flight_requests 1",
    ] {
        assert!(
            metrics.text.lines().any(|l| l == line),
            "{line} missing from\n{}",
            metrics.text
        );
    }
}

#[tokio::test]
async fn an_unknown_route_is_404_and_a_wrong_method_405_in_json() {
    let psp = spawn_psp().await;

    let unknown = psp.get("/payments").await;
    let wrong_method = psp.send(Method::DELETE, "/charges/ch_1", &[], None).await;
    let refund_by_get = psp.get("/charges/ch_1/refund").await;

    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "not_found");
    for reply in [wrong_method, refund_by_get] {
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{}",
            reply.text
        );
        assert_eq!(reply.code(), "method_not_allowed");
    }
}
