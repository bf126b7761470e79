//! Putting back into Redis what it lacks, from MySQL: open sales, live coupon policies, and the
//! point buckets' outboxes in the relay's registry. Runs at start and on
//! `POST /v1/admin/sales/restore`.

use anyhow::Context;

use crate::app::App;
use crate::coupons::policy_store;
use crate::keys;
use crate::outbox::registry;
use crate::sales::state;

/// Loads what Redis lacks from MySQL: open sales and live coupon policies. Returns how many of
/// each were loaded. Also (re-)registers the point buckets' outboxes with the relay.
pub async fn restore(app: &App) -> anyhow::Result<(usize, usize)> {
    let point_outboxes: Vec<String> = (0..keys::POINT_BUCKETS)
        .map(|bucket| keys::Outbox::Points(bucket).key(app.prefix()))
        .collect();
    registry::register(&app.redis, app.prefix(), point_outboxes)
        .await
        .context("registering the point outboxes with the relay")?;
    let sales = state::restore(&app.redis, &app.db, &app.scripts, app.prefix())
        .await
        .context("restoring open sales into Redis")?;
    let policies =
        policy_store::restore(&app.redis, &app.db, &app.scripts.load_policy, app.prefix())
            .await
            .context("restoring coupon policies into Redis")?;
    Ok((sales, policies))
}
