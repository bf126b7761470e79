//! `flashgate-batch reconcile-points` as an operator runs it: the built binary, its exit codes
//! (0 clean, 2 drift found even if fixed, 1 failed), a failed run keeping its checkpoint, and
//! `--restart` starting over from the first user.

use std::process::{Command, Output, Stdio};

use flashgate_batch::reconcile::checkpoint::CheckpointFile;
use serde_json::Value;

use crate::helpers::Stores;

/// Runs `flashgate-batch reconcile-points <args>` on the test's stores; its exit code and
/// its JSON summary (`Null` when it printed none).
fn reconcile_points(stores: &Stores, args: &[&str]) -> (i32, Value) {
    let Output { status, stdout, .. } = Command::new(env!("CARGO_BIN_EXE_flashgate-batch"))
        .arg("reconcile-points")
        .args(["--workers", "1", "--page-size", "100"])
        .args(args)
        .env("FLASHGATE__MYSQL__URL", stores.settings.mysql.url.expose())
        .env(
            "FLASHGATE__REDIS__KEY_PREFIX",
            &stores.settings.redis.key_prefix,
        )
        .env(
            "FLASHGATE__BATCH__CHECKPOINT_DIR",
            &stores.settings.batch.checkpoint_dir,
        )
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run flashgate-batch");
    let summary = serde_json::from_slice(&stdout).unwrap_or(Value::Null);
    (status.code().expect("exited, not killed"), summary)
}

async fn checkpoint(stores: &Stores) -> CheckpointFile {
    let database: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&stores.db)
        .await
        .expect("name");
    CheckpointFile::new(&stores.settings.batch.checkpoint_dir, &database)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_points_exits_0_when_clean_and_2_when_it_finds_drift_even_if_it_fixed_it() {
    let stores = Stores::seeded(300, 2_000).await;

    let clean = reconcile_points(&stores, &[]);
    let (user, _) = stores.users_with_at_least(1, 1).await.remove(0);
    stores.bump_cache(&user, "balance", 5).await;
    let drifted = reconcile_points(&stores, &["--fix"]);
    let repaired = reconcile_points(&stores, &[]);

    assert_eq!(clean.0, 0, "{}", clean.1);
    assert_eq!(clean.1["mismatch_count"], 0);
    assert_eq!(clean.1["users_checked"], 300);
    assert_eq!(drifted.0, 2, "{}", drifted.1);
    assert_eq!(drifted.1["mismatch_count"], 1);
    assert_eq!(drifted.1["fixed"], 1);
    assert_eq!(repaired.0, 0, "the fix held: {}", repaired.1);
    assert_eq!(
        drifted.1["exit_code"], 2,
        "the summary says what the process did"
    );
    stores.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_exits_1_and_keeps_its_checkpoint_and_restart_starts_from_the_first_user() {
    let stores = Stores::seeded(1_000, 6_000).await;
    // The last user's balance row is one point high (its cache agrees), and the database
    // refuses to change that row: the repair, in the last range, fails every attempt.
    let (last,): (String,) =
        sqlx::query_as("SELECT user_id FROM point_balances ORDER BY user_id DESC LIMIT 1")
            .fetch_one(&stores.db)
            .await
            .expect("last user");
    stores
        .sql(
            "UPDATE point_balances SET balance = balance + 1 WHERE user_id = ?",
            &last,
        )
        .await;
    stores.bump_cache(&last, "balance", 1).await;
    let refuse = format!(
        "CREATE TRIGGER refuse_repair BEFORE UPDATE ON point_balances FOR EACH ROW \
         IF NEW.user_id = '{last}' THEN \
         SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the test refuses this repair'; END IF"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(refuse))
        .execute(&stores.db)
        .await
        .expect("trigger");
    let checkpoint = checkpoint(&stores).await;

    let failed = reconcile_points(&stores, &["--fix"]);
    let kept = checkpoint.load().expect("checkpoint readable");
    sqlx::query("DROP TRIGGER refuse_repair")
        .execute(&stores.db)
        .await
        .expect("drop trigger");
    let restarted = reconcile_points(&stores, &["--fix", "--restart"]);
    let left = checkpoint.load().expect("checkpoint readable");

    assert_eq!(failed.0, 1, "{}", failed.1);
    assert_eq!(failed.1, Value::Null, "a failed run prints no summary");
    let kept = kept.expect("the failed run kept its checkpoint");
    assert!(
        kept.totals.users_checked >= 900 && kept.totals.users_checked < 1_000,
        "every range before the failing one is recorded: {kept:?}"
    );
    assert_eq!(restarted.0, 2, "{}", restarted.1);
    assert_eq!(restarted.1["resumed"], false, "{}", restarted.1);
    assert_eq!(
        restarted.1["users_checked"], 1_000,
        "from the first user: {}",
        restarted.1
    );
    assert_eq!(restarted.1["fixed"], 1, "{}", restarted.1);
    assert_eq!(left, None, "the finished run removed the checkpoint");
    assert_eq!(stores.balances_off_the_ledger().await, 0);
    stores.clean_up().await;
}
