//! Waiting after the traffic: until the orders paid through the provider are final in MySQL,
//! until the orders left open have expired (lifecycle), and until the pipeline (outbox relay,
//! broker, persister) has written everything to MySQL, or the timeout passed.

use std::time::Duration;

use flashgate_events::keys::SaleKeys;
use fred::prelude::{ClientLike, Pool, SortedSetsInterface};
use tokio::time::Instant;

use crate::evidence::payments::stored_orders;
use crate::evidence::{
    Backends, Expiry, SHOWN, Sample, Settled, mysql_coupon_count, mysql_order_count,
    redis_sale_counters,
};
use crate::manager::Manager;

/// How often the drain looks.
const POLL: Duration = Duration::from_millis(100);

/// How long after its `pay_by` an unpaid order may still be open (issue 14: it becomes
/// `expired` within 5 s).
pub const EXPIRY_ALLOWANCE: Duration = Duration::from_secs(5);

/// Waits until the sale's outbox is empty, MySQL holds as many orders as Redis admitted and
/// every end Redis decided (no more orders open in MySQL than in Redis), and MySQL holds as
/// many coupons as the policy issued; `Ok(false)` when `timeout` passed first (the
/// invariants then show what is missing).
pub async fn wait(
    backends: &Backends,
    sale: Option<(&SaleKeys, u64)>,
    mut policy: Option<(&mut Manager, u64)>,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let sale_done = match sale {
            Some((keys, sale_id)) => {
                let redis = redis_sale_counters(&backends.redis, keys).await?;
                let (rows, open) = mysql_order_count(&backends.db, sale_id).await?;
                // `<=`, not `==`: an order the database's guard rejected may still be open in
                // Redis; that is for the invariants to show, not for the drain to wait on.
                redis.outbox == 0 && rows >= redis.admitted && open <= redis.open_orders
            }
            None => true,
        };
        let coupons_done = match &mut policy {
            Some((manager, policy_id)) => {
                let issued = manager.policy(*policy_id).await?.issued();
                mysql_coupon_count(&backends.db, *policy_id).await? >= issued
            }
            None => true,
        };
        if sale_done && coupons_done {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How often the wait for payments looks (each look reads the orders still open, in chunks).
const PAYMENTS_POLL: Duration = Duration::from_millis(250);

/// Waits until every order of `ids` (paid through the provider) is final in MySQL — paid,
/// cancelled or expired; not `confirmed`, not missing — or `timeout` passed; `started` is when
/// the traffic ended, the start of the reported time. Only the orders still open are read
/// again at each look; a look that fails is retried at the next.
pub async fn wait_for_payments(
    backends: &Backends,
    ids: &[String],
    timeout: Duration,
    started: Instant,
) -> anyhow::Result<Settled> {
    let deadline = Instant::now() + timeout;
    let mut open: Vec<String> = ids.to_vec();
    let mut warned = false;
    loop {
        // A look that fails (MySQL overloaded by the run it measures) is a look that found
        // nothing final: the wait goes on until its timeout, and the report says what is open.
        match stored_orders(&backends.db, &open).await {
            Ok(stored) => open.retain(|id| stored.get(id).is_none_or(|o| o.status == "confirmed")),
            Err(err) if !warned => {
                warned = true;
                tracing::warn!(
                    error = format!("{err:#}"),
                    "reading the paid orders; retrying"
                );
            }
            Err(_) => {}
        }
        if open.is_empty() || Instant::now() >= deadline {
            open.sort();
            return Ok(Settled {
                all_final: open.is_empty(),
                seconds: started.elapsed().as_secs_f64(),
                left: Sample::of(open),
            });
        }
        tokio::time::sleep(PAYMENTS_POLL).await;
    }
}

/// Waits until no order of the sale is open any more, judged by Redis's clock. Call it after
/// the traffic (no new orders come). The orders still open once the latest `pay_by` of the
/// orders open now plus `allowed` has passed are named as overdue; then it goes on waiting, at
/// most `give_up` longer, so the other checks judge the sale after every expiry, and the
/// report says how late the last one was.
pub async fn wait_for_expiry(
    backends: &Backends,
    keys: &SaleKeys,
    allowed: Duration,
    give_up: Duration,
) -> anyhow::Result<Expiry> {
    let redis = &backends.redis;
    let allowed_ms = i64::try_from(allowed.as_millis()).unwrap_or(i64::MAX);
    let give_up_ms = i64::try_from(give_up.as_millis()).unwrap_or(i64::MAX);
    let mut expiry = Expiry {
        allowed_ms,
        latest_pay_by_ms: latest_pay_by(redis, keys).await?,
        ..Expiry::default()
    };
    let Some(latest) = expiry.latest_pay_by_ms else {
        return Ok(expiry);
    };
    let due = latest.saturating_add(allowed_ms);
    loop {
        // Counted before the clock is read: when none is left, the time recorded is after
        // the last one went (never flatters the sweeper).
        let open: u64 = redis.zcard(&keys.holds).await?;
        let now = redis_now_ms(redis).await?;
        if open == 0 {
            expiry.emptied_after_ms = Some(now - latest);
            return Ok(expiry);
        }
        if now > due && expiry.overdue.count == 0 {
            let cutoff = (now - allowed_ms) as f64;
            let count: u64 = redis.zcount(&keys.holds, f64::NEG_INFINITY, cutoff).await?;
            let first: Vec<String> = redis
                .zrangebyscore(&keys.holds, "-inf", cutoff, false, Some((0, SHOWN as i64)))
                .await?;
            expiry.overdue = Sample { count, first };
        }
        if now > due.saturating_add(give_up_ms) {
            return Ok(expiry);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The latest `pay_by` of the sale's open orders, in ms; `None` when none is open.
async fn latest_pay_by(redis: &Pool, keys: &SaleKeys) -> anyhow::Result<Option<i64>> {
    let last: Vec<String> = redis
        .next()
        .custom(
            fred::cmd!("ZRANGE"),
            vec![keys.holds.as_str(), "-1", "-1", "WITHSCORES"],
        )
        .await?;
    Ok(match &last[..] {
        [_, score] => Some(score.parse::<f64>()? as i64),
        _ => None,
    })
}

/// Redis's clock in ms: the scripts judge `pay_by` by it, so the drain does too.
async fn redis_now_ms(redis: &Pool) -> anyhow::Result<i64> {
    let (secs, micros): (i64, i64) = redis
        .next()
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await?;
    Ok(secs * 1_000 + micros / 1_000)
}
