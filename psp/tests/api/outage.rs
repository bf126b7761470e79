//! The library's `serve`, as tests of other crates use it: a provider stopped (its port then
//! refuses connections) and served again on the same port keeps its book.

use std::time::Duration;

use flashgate_psp::{Provider, PspSettings, serve};
use http::{Method, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::helpers::{charge_body, client, free_addr, send};

/// Serves `provider` on `addr` until the returned sender is used; the task ends when it has
/// stopped.
async fn start(
    provider: &Provider,
    addr: std::net::SocketAddr,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(addr)
        .await
        .expect("bind the provider's port");
    let (stop, stopped) = oneshot::channel::<()>();
    let settings = PspSettings {
        listen: addr,
        latency_ms: 1,
        ..PspSettings::default()
    };
    let task = tokio::spawn(serve(provider.clone(), listener, settings, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

#[tokio::test]
async fn a_provider_served_again_on_the_same_port_after_an_outage_keeps_its_charges() {
    let provider = Provider::new();
    let addr = free_addr();
    let client = client();
    let body = charge_body("tok_ok", "ord-1", 500).to_string();
    let key = [("idempotency-key", "ord-1:1")];
    let (stop, task) = start(&provider, addr).await;
    let made = send(
        &client,
        addr,
        Method::POST,
        "/charges",
        &key,
        Some(body.clone()),
    )
    .await
    .expect("answered");

    stop.send(()).expect("running");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic");
    let during_outage = send(&client, addr, Method::GET, "/healthz", &[], None).await;
    let (stop, task) = start(&provider, addr).await;
    let found = send(
        &client,
        addr,
        Method::GET,
        "/charges?idempotency_key=ord-1:1",
        &[],
        None,
    )
    .await
    .expect("answered");
    let replay = send(&client, addr, Method::POST, "/charges", &key, Some(body))
        .await
        .expect("answered");

    assert_eq!(made.status, StatusCode::CREATED);
    assert!(during_outage.is_none(), "the port refuses while stopped");
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.json["id"], made.json["id"]);
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.json["id"], made.json["id"]);
    assert_eq!(
        provider.succeeded_by_reference().get("ord-1").copied(),
        Some(1),
        "one charge across the outage"
    );
    assert_eq!(provider.counts().charges, 1);
    assert_eq!(provider.charges_for("ord-1").len(), 1);
    let _ = stop.send(());
    let _ = task.await;
}
