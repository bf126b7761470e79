//! Waiting after the traffic until the pipeline (outbox relay, broker, persister) has written
//! everything admitted to MySQL, or the timeout passed.

use std::time::Duration;

use flashgate_events::keys::SaleKeys;
use tokio::time::Instant;

use crate::evidence::{Backends, mysql_coupon_count, mysql_order_count, redis_sale_counters};
use crate::manager::Manager;

/// How often the drain looks.
const POLL: Duration = Duration::from_millis(100);

/// Waits until the sale's outbox is empty and MySQL holds as many orders as Redis admitted,
/// and MySQL holds as many coupons as the policy issued; `Ok(false)` when `timeout` passed
/// first (the invariants then show what is missing).
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
                let (admitted, _, outbox) = redis_sale_counters(&backends.redis, keys).await?;
                outbox == 0 && mysql_order_count(&backends.db, sale_id).await? >= admitted
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
