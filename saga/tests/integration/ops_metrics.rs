//! The dashboards and alert rules of `ops/` name only metrics the services really export: a
//! gateway, a persister, a saga and the provider run in this process on the local stack, an
//! order is bought and paid, then every metric name the Grafana dashboard's PromQL, the
//! Prometheus rules and their unit tests use is looked up in the services' live `/metrics`
//! and in what the stock reconciliation pushes (`reconcile-stock --prometheus`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use flashgate_saga::startup::Saga;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

use crate::helpers::{PATIENCE, eventually, psp_settings, stack_with, unique};

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_and_the_alert_rules_use_is_exported_by_a_running_service() {
    // Arrange: the four services, and a little traffic through all of them.
    let stack = stack_with(psp_settings(), |_| {}).await;
    let mut persister_settings = stack.settings.clone();
    persister_settings.persister.listen = free_addr();
    persister_settings.kafka.consumer_group = unique("flashgate-test-persister-");
    let persister_addr = persister_settings.persister.listen;
    let (stop_persister, persister_stopped) = oneshot::channel::<()>();
    let persister = tokio::spawn(flashgate_persister::startup::run_until(
        persister_settings,
        async {
            let _ = persister_stopped.await;
        },
    ));
    let saga = Saga::build(stack.settings.clone())
        .await
        .expect("saga builds");
    let saga_addr = saga.local_addr();
    let (stop_saga, saga_stopped) = oneshot::channel::<()>();
    let saga = tokio::spawn(saga.run_until(async {
        let _ = saga_stopped.await;
    }));

    let sale = stack.sale(1).await;
    let user = unique("ops");
    let order = stack.buy(sale, &user).await;
    assert_eq!(
        stack.purchase(sale, &unique("late")).await.json["error"]["code"],
        "sold_out"
    );
    stack.pay(&order, &user, "tok_ok").await;
    stack.settled(&order, "completed").await;
    assert!(
        eventually(|| async {
            scrape(persister_addr)
                .await
                .is_some_and(|text| text.contains("\nflashgate_persister_persisted_total 1\n"))
        })
        .await,
        "the persister never stored the order"
    );

    // Act: scrape every service.
    let services = [
        ("gateway", stack.gateway_addr()),
        ("persister", persister_addr),
        ("saga", saga_addr),
        ("psp", stack.psp.addr),
    ];
    let stock = flashgate_batch::stock::run(
        &stack.settings,
        &flashgate_batch::stock::Options {
            fix: false,
            sales: vec![sale],
            settle: Duration::from_secs(1),
            pause_before_repair: None,
        },
    )
    .await
    .expect("the stock reconciliation runs");
    let mut exported = exported_names(&stock.exposition(0));
    for (service, addr) in services {
        let text = scrape(addr)
            .await
            .unwrap_or_else(|| panic!("{service} serves /metrics"));
        let names = exported_names(&text);
        // Every service shows its process's resources (the dashboard's last row).
        for process in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(names.contains(process), "{service} exports {process}");
        }
        exported.extend(names);
    }

    // Assert: nothing in ops/ names a metric no service exports.
    let files = ops_files();
    let mut referenced = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("ops file");
        let names = referenced_names(&text);
        assert!(!names.is_empty(), "{} names no metric", file.display());
        let missing: Vec<&String> = names.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{} uses metrics no service exports: {missing:?}",
            file.display()
        );
        referenced.extend(names);
    }
    // The check is not empty: the dashboard and the rules name dozens of metrics.
    assert!(referenced.len() >= 40, "{referenced:?}");
    assert!(referenced.contains("flashgate_persister_lag_seconds"));
    assert!(referenced.contains("flashgate_outbox_lag_seconds"));

    let _ = stop_saga.send(());
    let _ = stop_persister.send(());
    tokio::time::timeout(PATIENCE, saga)
        .await
        .expect("saga stops")
        .expect("saga task")
        .expect("clean stop");
    tokio::time::timeout(PATIENCE, persister)
        .await
        .expect("persister stops")
        .expect("persister task")
        .expect("clean stop");
}

#[test]
fn metric_names_are_read_from_expositions_and_from_promql() {
    let text = "# HELP a_total a\n# TYPE flashgate_a_total counter\nflashgate_a_total 1\n\
                # TYPE flashgate_h_seconds histogram\nflashgate_h_seconds_bucket{le=\"1\"} 0\n\
                flashgate_b{x=\"y\"} 2\n";
    let names = exported_names(text);
    for name in [
        "flashgate_a_total",
        "flashgate_h_seconds_bucket",
        "flashgate_h_seconds_count",
        "flashgate_h_seconds_sum",
        "flashgate_b",
    ] {
        assert!(names.contains(name), "{name} in {names:?}");
    }

    let promql = r#"{"expr": "sum by (le) (rate(flashgate_h_seconds_bucket{route=~\"$route\"}[$__rate_interval])) / process_open_fds", "uid": "flashgate-prometheus"}"#;
    let used: Vec<String> = referenced_names(promql).into_iter().collect();
    assert_eq!(used, ["flashgate_h_seconds_bucket", "process_open_fds"]);
}

/// The files of `ops/` that name metrics: the rules, their unit tests, the dashboards.
fn ops_files() -> Vec<PathBuf> {
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops");
    let mut files = Vec::new();
    for (dir, extension) in [
        ("prometheus/rules", "yml"),
        ("tests", "yml"),
        ("grafana/dashboards", "json"),
    ] {
        for entry in std::fs::read_dir(ops.join(dir)).expect("ops folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == extension) {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    files
}

/// Every metric name in a Prometheus text exposition; a histogram's `# TYPE` line stands for
/// its `_bucket`, `_sum` and `_count` series (present even before a first observation).
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Every word of `text` that is one of flashgate's metric names (`flashgate_*`) or a process
/// metric (`process_*`): PromQL functions, labels and Grafana variables are neither.
fn referenced_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("flashgate_") || word.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// A free loopback port (bound and released; the persister binds it next).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// `GET /metrics` of the service at `addr`; `None` until it answers 200.
async fn scrape(addr: SocketAddr) -> Option<String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}/metrics").parse().ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .ok()?
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = response.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}
