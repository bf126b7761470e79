//! One trace per order: a purchase sent with a W3C `traceparent` ends as a MySQL order row
//! carrying that trace id, and the persister's JSON log lines about the order carry it as
//! `span.trace_id` (the lines are captured as the binary would print them).

use flashgate_testkit::logs::Captured;
use http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{eventually, run_out_window, spawn_app, unique};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_sent_with_a_traceparent_ends_as_an_order_row_and_persister_log_lines_with_its_trace_id()
 {
    // Arrange: the production JSON logs, with the persister's line per order.
    let captured = Captured::install("info,flashgate_persister::trace=debug");
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 5})).await;
    let persister = app.start_persister().await;

    // Act
    let reply = app
        .purchase_with(
            sale_id,
            &unique("u"),
            json!({"quantity": 1}),
            &[
                ("traceparent", TRACEPARENT),
                ("x-request-id", "not-the-trace"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json);
    let order_id = reply.json["order_id"]
        .as_str()
        .expect("order id")
        .to_owned();
    let stored = app
        .wait_for_count(
            &format!("SELECT COUNT(*) FROM orders WHERE order_id = '{order_id}'"),
            1,
        )
        .await;
    assert_eq!(stored, 1, "the order reached MySQL");
    // Its line is written just after its batch commits.
    eventually(|| {
        let seen = captured
            .lines()
            .iter()
            .any(|l| l["span"]["trace_id"] == TRACE && l["message"] == "order persisted");
        async move { seen }
    })
    .await;

    // Assert: the answer continues the trace under a span id of its own.
    let answered = reply.headers["traceparent"].to_str().expect("ascii");
    assert!(
        answered.starts_with(&format!("00-{TRACE}-")) && answered.ends_with("-01"),
        "{answered}"
    );
    assert_ne!(answered, TRACEPARENT);
    assert_eq!(reply.headers["x-request-id"], TRACE);
    // The order's row.
    let stored: Option<String> =
        sqlx::query_scalar("SELECT trace_id FROM orders WHERE order_id = ?")
            .bind(&order_id)
            .fetch_one(&app.db)
            .await
            .expect("the order's row");
    assert_eq!(stored.as_deref(), Some(TRACE));
    // The persister's lines about it.
    let lines = captured.lines();
    let about: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["trace_id"] == TRACE)
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("flashgate_persister"))
        })
        .collect();
    assert!(
        !about.is_empty(),
        "no persister line with the trace id: {lines:#?}"
    );
    for line in about {
        assert_eq!(line["span"]["order_id"], order_id.as_str(), "{line}");
        assert_eq!(line["status"], "confirmed", "{line}");
    }
    persister.stop().await;
    app.stop().await;
}

const CANCEL_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CANCEL_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_s_cancel_is_logged_with_its_order_id_and_the_cancel_s_trace_id_by_the_request_and_the_relay()
 {
    // Arrange: the production JSON logs, with the relay's line per entry.
    let captured = Captured::install("info,flashgate_gateway::outbox::delivery=debug");
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 5})).await;
    let user = unique("u");
    let bought = app
        .purchase_with(
            sale_id,
            &user,
            json!({"quantity": 1}),
            &[("traceparent", TRACEPARENT)],
        )
        .await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.json);
    let order_id = bought.json["order_id"]
        .as_str()
        .expect("order id")
        .to_owned();

    // Act: the shopper cancels it, in a trace of another request.
    let token = app.token(&user, flashgate_gateway::auth::Role::Shopper);
    let cancelled = app
        .request(
            http::Method::POST,
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&token),
            &[("traceparent", CANCEL_TRACEPARENT)],
            None,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.json);
    // The relay sends both entries (admission, end) soon after.
    let relayed = |trace: &str| {
        captured.lines().iter().any(|l| {
            l["message"] == "relayed" && l["span"]["order_id"] == order_id.as_str() && {
                l["span"]["trace_id"] == trace
            }
        })
    };
    let both = eventually(|| {
        let seen = relayed(TRACE) && relayed(CANCEL_TRACE);
        async move { seen }
    })
    .await;

    // Assert: the relay named the order and each step's trace id.
    let lines = captured.lines();
    assert!(both, "no relay line per entry of the order: {lines:#?}");
    // The cancel request's line names the order under the cancel's trace id.
    let ended: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "order ended")
        .collect();
    assert_eq!(ended.len(), 1, "{lines:#?}");
    assert_eq!(
        ended[0]["span"]["order_id"],
        order_id.as_str(),
        "{lines:#?}"
    );
    assert_eq!(ended[0]["span"]["trace_id"], CANCEL_TRACE, "{lines:#?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_expired_by_the_sweeper_is_logged_with_its_order_id_and_the_pass_s_trace_id_by_the_sweeper_and_the_relay()
 {
    // Arrange: the production JSON logs, with the sweeper's and the relay's lines per order.
    let captured = Captured::install(
        "info,flashgate_gateway::lifecycle::sweeper=debug,\
         flashgate_gateway::outbox::delivery=debug",
    );
    let app = spawn_app().await;
    let sale_id = app.sale(json!({"stock": 5})).await;
    let bought = app.purchase(sale_id, &unique("u"), 1).await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{}", bought.json);
    let order_id = bought.json["order_id"]
        .as_str()
        .expect("order id")
        .to_owned();

    // Act: its payment window runs out; the sweeper expires it.
    run_out_window(&app, sale_id, &order_id).await;
    let expired_line = || {
        captured
            .lines()
            .into_iter()
            .find(|l| l["message"] == "order expired" && l["span"]["order_id"] == order_id.as_str())
    };
    let seen = eventually(|| {
        let seen = expired_line().is_some();
        async move { seen }
    })
    .await;
    assert!(
        seen,
        "no sweeper line about the order: {:#?}",
        captured.lines()
    );
    let trace = expired_line().expect("line")["span"]["trace_id"]
        .as_str()
        .expect("trace id")
        .to_owned();
    let relayed = eventually(|| {
        let seen = captured.lines().iter().any(|l| {
            l["message"] == "relayed"
                && l["kind"] == "order.expired"
                && l["span"]["order_id"] == order_id.as_str()
                && l["span"]["trace_id"] == trace.as_str()
        });
        async move { seen }
    })
    .await;

    // Assert: the relay sent its end under the pass's trace id, and the pass's own line
    // carries that trace id too.
    let lines = captured.lines();
    assert!(relayed, "no relay line for the order's end: {lines:#?}");
    assert!(!trace.is_empty());
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "orders expired: not paid in time"
                && l["span"]["trace_id"] == trace.as_str()),
        "{lines:#?}"
    );
    app.stop().await;
}
