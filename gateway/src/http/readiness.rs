//! The dependency checks behind `/readyz`, made at most about once a second.
//!
//! `/readyz` is on the public listener: a load balancer, a monitor or anyone else may call it
//! as often as it likes. Each real check pings Redis and asks the broker for metadata (a
//! blocking librdkafka call, run on the blocking pool so no runtime thread waits on it). The
//! result is kept for [`FRESH_FOR`]; concurrent callers of a stale result wait for ONE check
//! instead of starting one each.

use std::time::{Duration, Instant};

use fred::interfaces::ClientLike;
use fred::prelude::Pool;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::Mutex;

use crate::metrics::Metrics;

/// How long one round of checks answers for.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The longest one dependency check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the last round of checks found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// Redis answered `PING`.
    pub redis: bool,
    /// The broker answered a metadata request.
    pub kafka: bool,
}

/// The cached result of the last round and when it was made.
#[derive(Default)]
pub struct Readiness {
    // An async lock: callers that find the result stale queue behind the one check in flight.
    last: Mutex<Option<(Instant, Checks)>>,
}

impl Readiness {
    /// The dependency checks, at most [`FRESH_FOR`] old.
    pub async fn checks(
        &self,
        redis: &Pool,
        producer: &FutureProducer,
        metrics: &Metrics,
    ) -> Checks {
        let mut last = self.last.lock().await;
        if let Some((at, checks)) = *last
            && at.elapsed() < FRESH_FOR
        {
            return checks;
        }
        let checks = check(redis, producer, metrics).await;
        *last = Some((Instant::now(), checks));
        checks
    }
}

async fn check(redis: &Pool, producer: &FutureProducer, metrics: &Metrics) -> Checks {
    metrics.observe_readiness_check();
    let redis = async {
        tokio::time::timeout(CHECK_TIMEOUT, redis.ping::<String>(None))
            .await
            .is_ok_and(|r| r.is_ok())
    };
    let producer = producer.clone();
    let kafka = async move {
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, CHECK_TIMEOUT)
                .is_ok()
        })
        .await
        .unwrap_or(false)
    };
    let (redis, kafka) = tokio::join!(redis, kafka);
    Checks { redis, kafka }
}
