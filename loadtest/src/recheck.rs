//! Judging a finished run again: its evidence read anew from Redis, MySQL and the gateway,
//! what the shoppers were told taken from its report (for checks that an invariant breaks when
//! the data is tampered with after the run).

use std::time::Duration;

use flashgate_config::Settings;
use flashgate_events::keys::SaleKeys;
use flashgate_gateway::token::Minter;

use crate::client::Target;
use crate::evidence::{Backends, PaymentsRun, SaleRun, Sampled, gather};
use crate::invariants::{self, Check};
use crate::options::PayWith;
use crate::report::Report;
use crate::run::manager;

/// Reads the evidence of a finished run again from Redis, MySQL and the gateway, and judges
/// the invariants on it (what the shoppers were told is taken from the report).
pub async fn recheck(settings: &Settings, report: &Report) -> anyhow::Result<Vec<Check>> {
    let backends = Backends::connect(settings).await?;
    let keys = report
        .sale_id
        .map(|id| SaleKeys::new(&settings.redis.key_prefix, id));
    let policy = match report.policy_id {
        Some(id) => {
            let minter = Minter::from_settings(&settings.gateway.jwt)?;
            let target = Target::parse(&report.target)?;
            let timeout = Duration::from_millis(report.settings.request_timeout_ms);
            let ttl = Duration::from_secs(600);
            let mut manager = manager(&minter, &target, &report.tag, ttl, timeout)?;
            Some((id, manager.policy(id).await?))
        }
        None => None,
    };
    // What only the run could see (the sampler, the wait for expiry) is taken from its report.
    let seen = report.evidence.sale.as_ref();
    let sale = keys
        .as_ref()
        .zip(report.sale_id)
        .map(|(keys, sale_id)| SaleRun {
            keys,
            sale_id,
            sampled: seen.map_or_else(Sampled::new, |s| Sampled {
                samples: s.redis_samples,
                stock_min: s.redis_stock_min_seen,
                unbalanced: s.redis_unbalanced_seen.clone(),
            }),
            expiry: seen.and_then(|s| s.expiry.clone()),
            payments: (report.settings.pay_with == PayWith::Provider).then(|| PaymentsRun {
                token: report.settings.payment_token.clone(),
                settled: seen
                    .and_then(|s| s.payments.as_ref())
                    .and_then(|p| p.settled.clone()),
            }),
        });
    let evidence = gather(
        settings,
        &backends,
        &report.observed,
        &report.tag,
        sale,
        policy,
        u64::from(report.settings.per_user_limit),
    )
    .await?;
    Ok(invariants::check(&evidence))
}
