//! The application state every request handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flashgate_config::Settings;
use fred::prelude::Pool;
use rdkafka::producer::FutureProducer;
use sqlx::MySqlPool;

use crate::breaker::Guards;
use crate::http::auth::Verifier;
use crate::http::readiness::Readiness;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::revocation::Revocations;
use crate::sales::soldout::SoldOutCache;
use crate::scripts::Scripts;

/// Shared state of one gateway process.
pub struct App {
    /// The settings the process started with (limits, timeouts, topics, key prefix).
    pub settings: Settings,
    /// Redis through Sentinel, where admissions, claims and uses are decided (one script
    /// each) and their events wait in the outboxes.
    pub redis: Pool,
    /// MySQL, the system of record: managers' sales and policies are written here first, and
    /// reads fall back to it for what Redis no longer holds.
    pub db: MySqlPool,
    /// Idempotent Kafka producer (used by the relay and by readiness checks).
    pub producer: FutureProducer,
    /// The Lua scripts, run by their SHA so that each action is one round trip.
    pub scripts: Scripts,
    /// Checks the bearer token of every route the table gives a role.
    pub verifier: Verifier,
    /// What `/metrics` exposes; shared with the relay task, hence the `Arc`.
    pub metrics: Arc<Metrics>,
    /// Sales seen sold out, answered from memory without a Redis trip.
    pub sold_out: SoldOutCache,
    /// `/readyz`'s dependency checks, cached so a flood of probes costs one check a second.
    pub readiness: Readiness,
    /// Revoked tokens, checked in memory on every authenticated request.
    pub revocation: Revocations,
    /// The MySQL breaker of the read routes and the bound on Redis calls in flight.
    pub guards: Guards,
    /// The rate limits in force and the trusted proxies.
    pub limiter: Limiter,
    /// Signs and verifies waiting-room passes (no Redis trip on the purchase); `None` when no
    /// secret is configured (queued sales cannot be created then).
    pub queue_pass: Option<crate::queue::pass::PassKey>,
    // Set once shutdown begins: `/readyz` fails from then on, so load balancers stop sending.
    draining: AtomicBool,
}

impl App {
    /// Assembles the state from connected clients.
    pub fn new(
        settings: Settings,
        redis: Pool,
        db: MySqlPool,
        producer: FutureProducer,
        verifier: Verifier,
    ) -> Self {
        let revocation = Revocations::new(&settings);
        let limiter = Limiter::new(&settings);
        let sold_out = SoldOutCache::new(std::time::Duration::from_millis(
            settings.gateway.sold_out_cache_ms,
        ));
        let guards = Guards::new(&settings.gateway);
        let queue_pass = crate::queue::pass::PassKey::from_settings(&settings);
        Self {
            settings,
            redis,
            db,
            producer,
            scripts: Scripts::new(),
            verifier,
            metrics: Arc::new(Metrics::default()),
            sold_out,
            readiness: Readiness::default(),
            revocation,
            guards,
            limiter,
            queue_pass,
            draining: AtomicBool::new(false),
        }
    }

    /// The prefix of every Redis key, so that deployments sharing a Redis never meet.
    pub fn prefix(&self) -> &str {
        &self.settings.redis.key_prefix
    }

    /// Marks the process as shutting down: `/readyz` fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
