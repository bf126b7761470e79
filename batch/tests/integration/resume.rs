//! A run killed mid-repair (its fault point aborts the process) and resumed from its checkpoint
//! adds up to exactly what an uninterrupted run finds, leaves the same repaired data, and removes
//! the checkpoint when it finishes.

use flashgate_batch::reconcile::checkpoint::CheckpointFile;

use crate::helpers::Stores;

/// Every 9th user's balance row (cache agreeing) one point high, every 13th cache 2 high.
async fn inject_drift(stores: &Stores) {
    let users: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM point_balances ORDER BY user_id")
            .fetch_all(&stores.db)
            .await
            .expect("users");
    for (n, (user,)) in users.iter().enumerate() {
        if n % 9 == 0 {
            stores
                .sql(
                    "UPDATE point_balances SET balance = balance + 1 WHERE user_id = ?",
                    user,
                )
                .await;
            stores.bump_cache(user, "balance", 1).await;
        } else if n % 13 == 0 {
            stores.bump_cache(user, "balance", 2).await;
        }
    }
}

#[tokio::test]
async fn a_run_killed_midway_and_resumed_gives_the_same_result_as_an_uninterrupted_run() {
    // Arrange: two identical data sets with identical drift.
    let whole = Stores::seeded(1_500, 9_000).await;
    let killed = Stores::seeded(1_500, 9_000).await;
    inject_drift(&whole).await;
    inject_drift(&killed).await;

    // Act: one run straight through; the other stopped dead (the process aborts, as a kill
    // would) by its fault point right after its 40th repair, in the middle of a range's
    // repairs, then resumed.
    let uninterrupted = whole.reconcile(true).await;

    let database: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&killed.db)
        .await
        .expect("name");
    let checkpoint = CheckpointFile::new(&killed.settings.batch.checkpoint_dir, &database);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_flashgate-batch"))
        .args([
            "reconcile-points",
            "--fix",
            "--workers",
            "2",
            "--page-size",
            "100",
        ])
        .args(["--abort-after-repairs", "40"])
        .env("FLASHGATE__MYSQL__URL", killed.settings.mysql.url.expose())
        .env(
            "FLASHGATE__REDIS__KEY_PREFIX",
            &killed.settings.redis.key_prefix,
        )
        .env(
            "FLASHGATE__BATCH__CHECKPOINT_DIR",
            &killed.settings.batch.checkpoint_dir,
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run flashgate-batch");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(6),
        "stopped by its fault point (SIGABRT), not finished: {status}"
    );
    let progress = checkpoint
        .load()
        .expect("checkpoint readable")
        .expect("the killed run left its checkpoint");
    let being_repaired = progress.ahead.iter().filter(|e| !e.done).count();
    let resumed = killed.reconcile(true).await;
    let left = checkpoint.load().expect("checkpoint readable");
    let after = killed.reconcile(false).await;

    // Assert
    assert!(
        progress.totals.users_checked < 1_500,
        "killed midway: {progress:?}"
    );
    assert!(
        being_repaired >= 1,
        "killed while a range's repairs were under way: {progress:?}"
    );
    assert!(resumed.resumed);
    assert_eq!(left, None, "the finished run removed its checkpoint");
    assert_eq!(resumed.stats, uninterrupted.stats);
    assert!(
        uninterrupted.stats.mismatches.count() > 100,
        "{uninterrupted:#?}"
    );
    assert_eq!(
        uninterrupted.stats.fixed,
        uninterrupted.stats.mismatches.count()
    );
    assert_eq!(after.stats.mismatches.count(), 0, "{after:#?}");
    assert_eq!(killed.balances_off_the_ledger().await, 0);
    whole.clean_up().await;
    killed.clean_up().await;
}
