//! One run, start to finish: set-up through the manager API, tokens for the virtual
//! shoppers, the traffic, the wait for the pipeline to drain, the invariants, the report.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use flashgate_config::Settings;
use flashgate_events::keys::SaleKeys;
use flashgate_gateway::auth::Role;
use flashgate_gateway::token::Minter;
use fred::prelude::Pool;
use http::HeaderValue;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::client::Target;
use crate::driver::{Context, Lifecycle, Pace, drive};
use crate::evidence::{Backends, PaymentsRun, SaleRun, Sampled, gather, redis_sale_counters};
use crate::invariants;
use crate::lanes::Lane;
use crate::latency::Latency;
use crate::manager::Manager;
use crate::options::{Mode, PayWith, RunOptions, Scenario};
use crate::report::Report;
use crate::report::{Machine, commit};
use crate::scenario::{fates, needs_policy, needs_sale, phases, user_id};
use crate::tally::Tally;
use crate::{drain, progress, queued};

/// Traffic starts this long after the opening instant: the window is judged by Redis's clock.
const OPENING_MARGIN: Duration = Duration::from_millis(20);

/// Longest time the unmeasured set-up phase (sold-out's sell-out) may take.
const SETUP_LIMIT: Duration = Duration::from_secs(600);

/// How often the sampler reads the sale's counters in Redis while traffic runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Runs `options` against the gateway; `Err` only when the run could not be carried out (a
/// broken invariant is a report that did not pass).
pub async fn run(settings: &Settings, mut options: RunOptions) -> anyhow::Result<Report> {
    let queued = options.scenario == Scenario::QueuedRush;
    if queued {
        options.shoppers = options.queue.joiners;
    }
    options.validate().map_err(anyhow::Error::msg)?;
    let started_at = Utc::now();
    let target_url = options
        .target
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.gateway.listen));
    let target = Target::parse(&target_url)?;
    let twin = options.twin.as_deref().map(Target::parse).transpose()?;
    let timeout = Duration::from_millis(options.request_timeout_ms);
    let backends = Backends::connect(settings).await?;
    let minter = Minter::from_settings(&settings.gateway.jwt).context("minting tokens")?;
    let tag = format!("lt{}", started_at.timestamp_millis());
    let ttl = options.duration
        + options.drain_timeout
        + options.open_in
        + options.payment_window().unwrap_or_default()
        + options.queue.join_window
        + options.queue.admission_timeout
        + Duration::from_secs(3600);

    // Tokens are minted before the sale opens: signing is not part of what is measured.
    let authorizations = (0..options.shoppers)
        .map(|n| {
            let token = minter.mint(&user_id(&tag, n), &[Role::Shopper], ttl)?;
            Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut manager = manager(&minter, &target, &tag, ttl, timeout)?;
    let opens_at = Utc::now() + options.open_in;
    // queued-rush: the room opens at `opens_at`, the sale starts (the draw) a window later.
    let starts_at = opens_at + options.queue.join_window;
    let sale_id = if queued {
        let times = (opens_at, starts_at, starts_at + options.sale_length);
        let sale = manager.create_queued_sale(
            options.stock,
            options.per_user_limit,
            times,
            options.payment_window(),
            options.queue.admit_per_second,
        );
        Some(sale.await?.sale_id)
    } else if needs_sale(&options) {
        Some(
            manager
                .create_sale(
                    options.stock,
                    options.per_user_limit,
                    opens_at,
                    opens_at + options.sale_length,
                    options.payment_window(),
                )
                .await?
                .sale_id,
        )
    } else {
        None
    };
    let policy_id = if needs_policy(&options) {
        Some(
            manager
                .create_policy(options.coupons(), options.per_user_limit, opens_at)
                .await?
                .policy_id,
        )
    } else {
        None
    };
    tracing::info!(
        ?sale_id,
        ?policy_id,
        shoppers = options.shoppers,
        "set up; waiting for the opening"
    );
    let context = Arc::new(Context {
        target,
        twin,
        timeout,
        authorizations,
        purchase_path: sale_id.map(|id| format!("/v1/sales/{id}/purchases")),
        claim_path: policy_id.map(|id| format!("/v1/coupon-policies/{id}/claims")),
        pollable: Mutex::new((0, Vec::new())),
        lifecycle: (options.scenario == Scenario::Lifecycle).then(|| {
            Lifecycle::new(
                fates(options.lifecycle_shares),
                manager.authorization().clone(),
                options.pay_with,
                &options.payment_token,
            )
        }),
        counters: Default::default(),
    });
    let until_open = (opens_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(until_open + OPENING_MARGIN).await;

    let keys = sale_id.map(|id| SaleKeys::new(&settings.redis.key_prefix, id));
    let (stop_sampler, sampler) = match &keys {
        Some(keys) => {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(sample_counters(
                backends.redis.clone(),
                keys.clone(),
                stopped,
            ));
            (Some(stop), Some(task))
        }
        None => (None, None),
    };

    let (setup_plan, plan) = phases(&options);
    let setup = match setup_plan {
        Some(plan) => {
            let pace = Pace {
                mode: Mode::Closed,
                rate: options.rate,
                connections: options.connections,
                duration: SETUP_LIMIT,
                warmup: Duration::ZERO,
            };
            merged(drive(context.clone(), Arc::new(plan), pace, Instant::now()).await)
        }
        None => Tally::default(),
    };
    let pace = Pace {
        mode: options.mode,
        rate: options.rate,
        connections: options.connections,
        duration: options.duration,
        warmup: options.warmup,
    };
    let start = Instant::now();
    let line = progress::spawn(
        options.scenario.name(),
        context.clone(),
        start,
        options.duration,
        !options.quiet,
    );
    let (measured, lanes, queue) = match sale_id.filter(|_| queued) {
        Some(sale_id) => {
            let room = queued::Room {
                sale_id,
                starts_at,
                pass_ttl_ms: i64::try_from(settings.queue.pass_ttl_seconds)
                    .unwrap_or(i64::MAX / 2000)
                    * 1000,
                admission_timeout: options.queue.admission_timeout,
                connections: options.connections,
                admit_per_second: options.queue.admit_per_second,
                manager: manager.authorization().clone(),
            };
            let (tally, run) = queued::drive(context, room).await?;
            (tally, Vec::new(), Some(run))
        }
        None => {
            let lanes = drive(context, Arc::new(plan), pace, start).await;
            (merged(lanes.clone()), lanes, None)
        }
    };
    progress::finish(line);
    let traffic_ended = Instant::now();
    let measured_seconds = measured.last_answer.map_or(0.0, |last| {
        last.saturating_duration_since((start + options.warmup).into_std())
            .as_secs_f64()
    });

    // Orders paid through the provider: until each is final in MySQL (paid, or cancelled or
    // expired when the provider could not charge it in time). First, so that the orders
    // open in Redis afterwards are the abandoned ones alone (a paying order's hold lasts
    // until its pay_by + the payments grace).
    let payments = match options.pay_with {
        PayWith::Provider if sale_id.is_some() => {
            let ids: Vec<String> = measured.payments.iter().map(|(_, id)| id.clone()).collect();
            let settled =
                drain::wait_for_payments(&backends, &ids, options.payment_timeout, traffic_ended)
                    .await?;
            Some(PaymentsRun {
                token: options.payment_token.clone(),
                settled: Some(settled),
            })
        }
        _ => None,
    };
    // Abandoned orders expire by their pay_by (+ 5 s): the lifecycle waits for it (and, when
    // late, up to the drain timeout more) before it waits for MySQL to hold every end. The
    // sampler keeps watching meanwhile.
    let expiry = match (&keys, options.scenario) {
        (Some(keys), Scenario::Lifecycle) => {
            let allowed = drain::EXPIRY_ALLOWANCE;
            Some(drain::wait_for_expiry(&backends, keys, allowed, options.drain_timeout).await?)
        }
        _ => None,
    };
    let drained = drain::wait(
        &backends,
        keys.as_ref().zip(sale_id),
        policy_id.map(|id| (&mut manager, id)),
        options.drain_timeout,
    )
    .await?;
    let drain_seconds = traffic_ended.elapsed().as_secs_f64();
    if let Some(stop) = stop_sampler {
        let _ = stop.send(true);
    }
    let sampled = match sampler {
        Some(task) => task.await.context("counter sampler")?,
        None => Sampled::new(),
    };

    let mut all = setup.clone();
    all.merge(measured.clone());
    let sale = keys.as_ref().zip(sale_id).map(|(keys, sale_id)| SaleRun {
        keys,
        sale_id,
        sampled,
        expiry,
        payments,
    });
    let evidence = gather(
        settings,
        &backends,
        &all,
        &tag,
        sale,
        match policy_id {
            Some(id) => Some((id, manager.policy(id).await?)),
            None => None,
        },
        u64::from(options.per_user_limit),
    )
    .await?;
    let mut checks = invariants::check(&evidence);
    if let Some(queue) = &queue {
        checks.extend(queued::checks(queue, u64::from(options.stock)));
    }
    // With a twin, each gateway's share: the target's lane, then the twin's.
    let lanes = match &options.twin {
        Some(twin) => std::iter::zip([target_url.clone(), twin.clone()], &lanes)
            .map(|(url, tally)| Lane::new(url, tally, measured_seconds))
            .collect(),
        None => Vec::new(),
    };
    Ok(Report {
        lanes,
        target: target_url,
        sale_id,
        policy_id,
        started_at,
        machine: Machine::current(),
        commit: commit(),
        measured_requests: measured.measured,
        measured_seconds,
        throughput: if measured_seconds > 0.0 {
            measured.measured as f64 / measured_seconds
        } else {
            0.0
        },
        latency_ms: Latency::of(&measured),
        status_counts: measured.labelled(),
        setup_status_counts: setup.labelled(),
        drain_seconds,
        drained,
        invariants: checks,
        evidence,
        observed: all,
        tag,
        queue,
        settings: options,
    })
}

/// The lanes' tallies as one.
fn merged(lanes: Vec<Tally>) -> Tally {
    let mut all = Tally::default();
    for lane in lanes {
        all.merge(lane);
    }
    all
}

pub(crate) fn manager(
    minter: &Minter,
    target: &Target,
    tag: &str,
    ttl: Duration,
    timeout: Duration,
) -> anyhow::Result<Manager> {
    let token = minter.mint(&format!("{tag}-manager"), &[Role::Manager], ttl)?;
    Manager::new(target.clone(), &token, timeout)
}

/// Reads the sale's counters (at one instant each time) until told to stop; returns what it
/// saw.
async fn sample_counters(redis: Pool, keys: SaleKeys, mut stop: watch::Receiver<bool>) -> Sampled {
    let mut sampled = Sampled::new();
    let mut warned = false;
    loop {
        match redis_sale_counters(&redis, &keys).await {
            // Not in Redis (yet, or any more once cleaned up): nothing to judge.
            Ok(counters) if counters.total == 0 => {}
            Ok(counters) => sampled.add(&counters),
            // Logged once: a Redis outage would otherwise log 50 lines a second.
            Err(err) if !warned => {
                warned = true;
                tracing::warn!(error = format!("{err:#}"), "sampling the sale's counters");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = stop.changed() => break,
        }
    }
    sampled
}
