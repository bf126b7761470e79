//! `flashgate-batch verify-draw` as anyone checking a waiting room's draw runs it: exit 0 when
//! the seed matches the commitment and gives the published order, 2 with the reason when it
//! does not, read from MySQL or from a saved copy of `GET /v1/sales/{id}/queue/draw`.

use std::process::{Command, Output, Stdio};

use flashgate_config::Settings;
use flashgate_events::draw;
use flashgate_testkit::{fresh_database, stack_settings, unique};
use serde_json::json;

/// Runs `flashgate-batch verify-draw --sale ID [args]`: exit code, stdout, stderr.
fn verify(settings: &Settings, sale: u64, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_flashgate-batch"))
        .args(["verify-draw", "--sale", &sale.to_string()])
        .args(args)
        .env("FLASHGATE__MYSQL__URL", settings.mysql.url.expose())
        .stdin(Stdio::null())
        .output()
        .expect("run flashgate-batch");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[tokio::test]
async fn verify_draw_exits_0_for_a_true_draw_and_2_with_the_reason_for_a_tampered_one() {
    let mut settings = stack_settings();
    let db = fresh_database(&mut settings).await;
    flashgate_persister::db::migrate(&db)
        .await
        .expect("migrate");
    let seed = [42_u8; draw::SEED_BYTES];
    let joined: Vec<String> = (0..100).map(|i| format!("ticket-{i:03}")).collect();
    let drawn = draw::order(&seed, &joined);
    sqlx::query(
        "INSERT INTO sale_queues (sale_id, mode, opens_at, admit_per_second, seed, commitment, \
         drawn_at, drawn_tickets) VALUES (7, 'draw', UTC_TIMESTAMP(3), 10, ?, ?, \
         UTC_TIMESTAMP(3), ?)",
    )
    .bind(hex_of(&seed))
    .bind(draw::commitment(&seed))
    .bind(drawn.join("\n"))
    .execute(&db)
    .await
    .expect("a drawn room");

    // From MySQL.
    let (code, out, err) = verify(&settings, 7, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("checks out") && out.contains("100 tickets"),
        "{out}"
    );
    let (code, out, err) = verify(&settings, 8, &[]);
    assert_eq!(code, 1, "no draw for this sale: {err}");
    assert!(format!("{out}{err}").contains("has no draw"), "{out}{err}");

    // From a saved copy of the route's answer: true, then with two positions swapped, then
    // with another seed.
    let file = std::env::temp_dir().join(unique("draw-") + ".json");
    let write = |tickets: &[String], seed_hex: String| {
        let body = json!({
            "sale_id": 7, "seed": seed_hex, "commitment": draw::commitment(&seed),
            "drawn_at": "2026-01-01T00:00:00Z", "tickets": tickets,
        });
        std::fs::write(&file, body.to_string()).expect("write");
    };
    let path = file.to_str().expect("a path");
    write(&drawn, hex_of(&seed));
    assert_eq!(verify(&settings, 7, &["--file", path]).0, 0);

    let mut swapped = drawn.clone();
    swapped.swap(10, 11);
    write(&swapped, hex_of(&seed));
    let (code, _, err) = verify(&settings, 7, &["--file", path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("does NOT check out") && err.contains("position 11"),
        "{err}"
    );

    write(&drawn, hex_of(&[1; draw::SEED_BYTES]));
    let (code, _, err) = verify(&settings, 7, &["--file", path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not the commitment"), "{err}");
    let _ = std::fs::remove_file(&file);
    flashgate_testkit::drop_database(db).await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
