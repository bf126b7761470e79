//! Drift injected into balance rows and Redis caches is reported exactly and repaired once.

use flashgate_batch::reconcile::summary::{DriftTally, EXIT_CLEAN, EXIT_DRIFT, MismatchKind};

use crate::helpers::Stores;

#[tokio::test]
async fn drift_in_balances_and_caches_is_reported_exactly_and_fixed_and_a_second_run_finds_none() {
    // Arrange: 300 users, every cache filled; then six users put wrong on purpose.
    let stores = Stores::seeded(300, 1_800).await;
    let users = stores.users_with_at_least(10, 6).await;
    let [
        (raised, _),
        (lowered, _),
        (missing, missing_sum),
        (cached_high, _),
        (pending, pending_balance),
        (in_flight, _),
    ] = users.as_slice()
    else {
        panic!("six users with points: {users:?}");
    };
    // Balance row 7 too high, cache agreeing with it: only the row is wrong.
    stores
        .sql(
            "UPDATE point_balances SET balance = balance + 7 WHERE user_id = ?",
            raised,
        )
        .await;
    stores.bump_cache(raised, "balance", 7).await;
    // Balance row 3 too low, no cache.
    stores
        .sql(
            "UPDATE point_balances SET balance = balance - 3 WHERE user_id = ?",
            lowered,
        )
        .await;
    stores.drop_cache(lowered).await;
    // Ledger rows without a balance row.
    stores
        .sql("DELETE FROM point_balances WHERE user_id = ?", missing)
        .await;
    stores.drop_cache(missing).await;
    // Cache 5 too high at the row's version.
    stores.bump_cache(cached_high, "balance", 5).await;
    // Cache claiming 4 points pending that its balance does not account for.
    stores.bump_cache(pending, "pending", 4).await;
    // Cache of a newer version than the row: in flight, never judged.
    stores.bump_cache(in_flight, "version", 1).await;

    // Act
    let first = stores.reconcile(true).await;
    let second = stores.reconcile(true).await;

    // Assert: exactly what was injected, repaired once.
    let found = first.stats.mismatches;
    assert_eq!(
        found.balance,
        DriftTally {
            count: 2,
            drift: 10
        },
        "{first:#?}"
    );
    assert_eq!(
        found.missing_balance,
        DriftTally {
            count: 1,
            drift: *missing_sum as u64
        }
    );
    assert_eq!(found.cache, DriftTally { count: 2, drift: 9 });
    assert_eq!(first.total_drift, 19 + *missing_sum as u64);
    assert_eq!(first.stats.users_checked, 300);
    assert_eq!(first.stats.ledger_rows, 1_800);
    assert_eq!((first.stats.fixed, first.stats.unfixable), (5, 0));
    assert_eq!(first.stats.unsettled_sample, vec![in_flight.clone()]);
    assert_eq!(first.exit_code, EXIT_DRIFT);
    let kinds: Vec<_> = first
        .stats
        .sample
        .iter()
        .map(|m| (m.user_id.as_str(), m.kind))
        .collect();
    assert!(
        kinds.contains(&(missing.as_str(), MismatchKind::MissingBalance)),
        "{kinds:?}"
    );

    assert_eq!(stores.balances_off_the_ledger().await, 0);
    assert_eq!(
        stores.cache(cached_high).await,
        None,
        "nothing pending: dropped, rebuilt on read"
    );
    let (balance, _, left_pending) = stores.cache(pending).await.expect("pending cache kept");
    assert_eq!((balance, left_pending), (pending_balance - 4, 4));

    assert_eq!(second.stats.mismatches.count(), 0, "{second:#?}");
    assert_eq!(second.stats.fixed, 0);
    assert_eq!(
        second.stats.unsettled, 1,
        "the in-flight cache is still left alone"
    );
    assert_eq!(second.exit_code, EXIT_CLEAN);
    stores.clean_up().await;
}
