//! The broker goes down during payments, then MySQL is restarted during payments: every order
//! still ends paid with one charge, in Redis and in MySQL; nothing is lost or done twice.
//!
//! The broker is frozen (SIGSTOP, then SIGCONT), not stopped: its clients see it go silent,
//! their requests time out, as with a broker that died or a network that cut it off. A
//! stopped and restarted tansu 0.6 panics in its storage on the first message of an
//! idempotent producer that lived through the restart (`idempotent_message_check`: its
//! producer state is not found), and stays broken for every client, which would say nothing
//! about flashgate. MariaDB is stopped and started for real.
//!
//! This test stops shared servers of the stack, so `scripts/test.sh` runs it alone, after
//! every other test (it lives in a module named `disruptive`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate_persister::consumer::Persister;
use flashgate_persister::metrics::Metrics;
use flashgate_testkit::stack as servers;
use tokio::sync::watch;

use crate::helpers::{Stack, eventually, psp_settings, stack_with, unique};

/// Starts a stopped server of the stack again when dropped, so a failed assertion does not
/// leave the shared stack without it.
struct Restart(&'static str);

impl Drop for Restart {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh");
            let started = std::process::Command::new(script)
                .args(["start", self.0])
                .status();
            if !started.is_ok_and(|s| s.success()) {
                eprintln!("could not start {} again: run scripts/stack.sh up", self.0);
            }
        } else {
            servers(&["start", self.0]);
        }
    }
}

/// Freezes the stack's broker (SIGSTOP) until dropped (SIGCONT), also when an assertion fails.
struct Frozen(String);

impl Frozen {
    fn broker() -> Self {
        let pidfile =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.stack/run/tansu.pid");
        let pid = std::fs::read_to_string(pidfile).expect("tansu's pid file (stack.sh up?)");
        let pid = pid.trim().to_owned();
        signal("-STOP", &pid);
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

fn signal(which: &str, pid: &str) {
    let sent = std::process::Command::new("kill")
        .args([which, pid])
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill {which} {pid}");
}

/// Pays `orders` with `tok_ok`, one after another (a payment request goes to the sale's
/// outbox in Redis, so it is answered while the broker is down).
async fn pay(stack: &Stack, orders: &[(String, String)]) {
    for (order, user) in orders {
        stack.pay(order, user, "tok_ok").await;
    }
}

/// Payments completed and announced, or `None` while MySQL does not answer.
async fn completed(stack: &Stack) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM payments WHERE status = 'completed' AND next_at IS NULL",
    )
    .fetch_one(&stack.db)
    .await
    .ok()
}

/// Orders MySQL holds paid, or `None` while it does not answer.
async fn paid_in_mysql(stack: &Stack) -> Option<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'paid'")
        .fetch_one(&stack.db)
        .await
        .ok()
}

/// Waits (up to 2 minutes: a broker or a database coming back takes a while) until `n`
/// payments completed.
async fn until_completed(stack: &Stack, n: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while completed(stack).await != Some(n) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:?} of {n} completed",
            completed(stack).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_through_a_broker_outage_and_a_mysql_restart_end_paid_once_each() {
    let stack = Arc::new(stack_with(psp_settings(), |_| {}).await);
    let saga = stack.start_saga().await;
    let metrics = Arc::new(Metrics::default());
    let persister = Persister::new(stack.settings.clone(), stack.db.clone(), metrics.clone())
        .await
        .expect("persister");
    let (stop_persister, stopped) = watch::channel(false);
    let persisting = tokio::spawn(persister.run(stopped));

    let sale = stack.sale(60).await;
    let mut orders = Vec::new();
    for _ in 0..60 {
        let user = unique("d");
        orders.push((stack.buy(sale, &user).await, user));
    }
    let (first, rest) = orders.split_at(20);
    let (second, third) = rest.split_at(20);
    pay(&stack, first).await;
    until_completed(&stack, 20, "before the faults").await;

    // The broker goes silent: the payment requests wait in the sale's outbox.
    let broker = Frozen::broker();
    pay(&stack, second).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        completed(&stack).await,
        Some(20),
        "nothing reaches the saga without the broker"
    );
    drop(broker);
    until_completed(&stack, 40, "after the broker came back").await;

    // MySQL goes down while the saga works the last payments (asking for a payment reads the
    // order, MySQL included, so they are asked for just before), and comes back.
    pay(&stack, third).await;
    servers(&["stop", "mariadb"]);
    let database = Restart("mariadb");
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(database);
    until_completed(&stack, 60, "after MySQL came back").await;

    // Every order paid once: one charge each at the provider, paid in Redis and in MySQL.
    for (order, _) in &orders {
        assert_eq!(stack.psp.succeeded(order), 1, "{order}: one charge");
        assert_eq!(stack.psp.refunds(order), 0, "{order}: no refund");
        assert_eq!(stack.record(sale, order).await.0, "paid", "{order}");
    }
    assert!(
        eventually(|| async { paid_in_mysql(&stack).await == Some(60) }).await,
        "MySQL holds {:?} paid orders",
        paid_in_mysql(&stack).await
    );
    let _ = stop_persister.send(true);
    persisting
        .await
        .expect("persister task")
        .expect("clean stop");
    saga.stop().await;
}
