//! The binary as an operator runs it: `--help`, `config`, exit 64 on a bad value, the warning
//! that charges live in memory only, and a graceful stop on SIGTERM.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::helpers::{BIN, Options, charge_body, spawn_psp, spawn_psp_with};

/// Runs the binary with `args` and `env`; its exit code, stdout and stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(BIN)
        .args(args)
        .env_remove("FLASHGATE_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run flashgate-psp");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_serve_and_config_commands() {
    let (code, out, _) = run(&["--help"], &[]);

    assert_eq!(code, 0);
    assert!(out.contains("serve"), "{out}");
    assert!(out.contains("config"), "{out}");
    assert!(out.contains("memory"), "{out}");
}

#[test]
fn config_prints_the_effective_provider_settings_from_the_environment() {
    let (code, out, _) = run(
        &["config"],
        &[
            ("FLASHGATE__PSP__LATENCY_MS", "7"),
            ("FLASHGATE__PSP__LISTEN", "127.0.0.1:18090"),
        ],
    );

    assert_eq!(code, 0);
    assert!(out.contains("psp: PspSettings"), "{out}");
    assert!(out.contains("latency_ms: 7,"), "{out}");
    assert!(out.contains("127.0.0.1:18090"), "{out}");
    assert!(out.contains("slow_ms: 5000,"), "the default: {out}");
}

#[test]
fn a_bad_config_value_exits_64_naming_the_key() {
    for (name, value, key) in [
        ("FLASHGATE__PSP__FAILURE_SHARE", "1.5", "psp.failure_share"),
        ("FLASHGATE__PSP__LATENCY_MS", "fast", "latency_ms"),
        ("FLASHGATE__PSP__LISTEN", "nowhere", "listen"),
    ] {
        let (code, _, err) = run(&["serve"], &[(name, value)]);

        assert_eq!(code, 64, "{name}={value}: {err}");
        assert!(err.contains(key), "{name}={value}: {err}");
    }
}

#[tokio::test]
async fn the_provider_says_at_start_that_its_charges_live_in_memory_only() {
    let psp = spawn_psp().await;

    let log = psp.log_text();

    assert!(log.contains("in memory only"), "{log}");
    assert!(log.contains(&psp.addr.to_string()), "{log}");
}

#[tokio::test]
async fn sigterm_closes_the_port_answers_the_charge_in_flight_and_exits_0() {
    let mut psp = spawn_psp_with(Options {
        slow_ms: 1_500,
        ..Options::default()
    })
    .await;

    let body = charge_body("tok_slow", "ord-1", 100);

    let (answer, refused_while_draining) = tokio::join!(psp.charge(Some("slow-1"), &body), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        psp.terminate();
        tokio::time::sleep(Duration::from_millis(300)).await;
        psp.try_send(Method::GET, "/healthz", &[], None)
            .await
            .is_none()
    });
    let status = psp.exit_status().await;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert!(refused_while_draining, "the port closes at once");
    assert_eq!(status.code(), Some(0), "{}", psp.log_text());
    assert!(psp.log_text().contains("provider stopped cleanly"));
}
