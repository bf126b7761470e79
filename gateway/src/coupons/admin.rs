//! What managers do with coupon policies: create one (MySQL, then Redis), read it with its live
//! counters, list them, pause, resume or close one.

use crate::app::App;
use crate::coupons::policy::{NewPolicy, Policy, PolicyView};
use crate::coupons::policy_store::{self, StatusChange};
use crate::failure::{Failure, Invalid};

/// Stores the policy in MySQL and loads it into Redis; the policy with its counters.
pub async fn create(app: &App, new: &NewPolicy) -> Result<PolicyView, Failure> {
    new.validate()?;
    let policy = policy_store::insert(&app.db, new)
        .await
        .map_err(Failure::Mysql)?;
    policy_store::load_into_redis(
        &app.redis,
        &app.db,
        &app.scripts.load_policy,
        app.prefix(),
        &policy,
    )
    .await
    .map_err(|err| {
        Failure::Redis(err.context(
            "policy stored in MySQL but not loaded into Redis; POST /v1/admin/sales/restore",
        ))
    })?;
    tracing::info!(
        policy_id = policy.policy_id,
        total = policy.total_quantity,
        "coupon policy created"
    );
    Ok(PolicyView {
        remaining: Some(i64::from(policy.total_quantity)),
        issued: Some(0),
        persisted: policy.persisted,
        policy,
    })
}

/// The policy with its live counters from Redis, if there is such a policy.
pub async fn view(app: &App, policy_id: u64) -> Result<Option<PolicyView>, Failure> {
    let find = async {
        policy_store::find(&app.db, policy_id)
            .await
            .map_err(Failure::Mysql)
    };
    let Some(policy) = app.guards.mysql.call(find).await? else {
        return Ok(None);
    };
    let (remaining, issued) =
        policy_store::live_counters(&app.redis, &app.scripts, app.prefix(), policy_id)
            .await
            .map_err(Failure::Redis)?;
    Ok(Some(PolicyView {
        persisted: policy.persisted,
        policy,
        remaining,
        issued,
    }))
}

/// Up to `limit` policies with ids below `before`, newest first.
pub async fn list(app: &App, before: Option<u64>, limit: u32) -> Result<Vec<Policy>, Failure> {
    app.guards
        .mysql
        .call(async {
            policy_store::list(&app.db, before, limit)
                .await
                .map_err(Failure::Mysql)
        })
        .await
}

/// Sets the policy's status (`active`, `paused` or `closed`), in MySQL and in Redis.
pub async fn set_status(app: &App, policy_id: u64, status: &str) -> Result<StatusChange, Failure> {
    if !matches!(status, "active" | "paused" | "closed") {
        return Err(Invalid::new("status: must be \"active\", \"paused\" or \"closed\"").into());
    }
    let change = policy_store::set_status(&app.redis, &app.db, app.prefix(), policy_id, status)
        .await
        .map_err(Failure::Internal)?;
    if change == StatusChange::Changed {
        tracing::info!(policy_id, status, "coupon policy status changed");
    }
    Ok(change)
}
