//! Which outboxes the relay watches: gauges of each, retiring an outbox that is empty and over,
//! and sweeping Redis for non-empty outboxes outside the registry.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use flashgate_events::keys::{Outbox, PolicyKeys, SaleKeys};
use fred::prelude::{ClientLike, StreamsInterface, Value};

use crate::metrics::{Dependency, OutboxGauge};
use crate::outbox::registry;
use crate::outbox::relay::Relay;

impl Relay {
    /// Updates the length and lag gauges of an outbox, and stops watching the outbox of a sale
    /// or policy that is over (or vanished) once it is empty. A sale is over at its end; a
    /// policy when its last coupon has expired (until then a redemption may still be written).
    /// "Empty and over" is decided by `lua/outbox_retire.lua` in one step by Redis's clock.
    pub(super) async fn observe(&self, outbox: Outbox) {
        let key = outbox.key(&self.prefix);
        let Ok(length) = self.redis.xlen::<u64, _>(&key).await else {
            return;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let lag_seconds = if length == 0 {
            0.0
        } else {
            let first: Result<Vec<(String, HashMap<String, String>)>, _> =
                self.redis.xrange(&key, "-", "+", Some(1)).await;
            first
                .ok()
                .and_then(|entries| entries.into_iter().next())
                .and_then(|(id, _)| id.split('-').next()?.parse::<u128>().ok())
                .map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0)
        };
        self.metrics.set_outbox(
            outbox,
            OutboxGauge {
                length,
                lag_seconds,
            },
        );
        // A sale's open orders may still end (cancelled, expired, paid) after the sale is
        // over, each appending to its outbox: its `held` units keep it watched.
        let (state, field, open) = match outbox {
            Outbox::Sale(id) => (SaleKeys::new(&self.prefix, id).sale, "ends_ms", "held"),
            Outbox::Policy(id) => (
                PolicyKeys::new(&self.prefix, id).policy,
                "redeem_until_ms",
                "",
            ),
            Outbox::Points(_) => return,
        };
        if length > 0 {
            return;
        }
        let grace_ms = i64::try_from(self.retire_grace.as_millis()).unwrap_or(i64::MAX);
        let decision: Result<String, _> = self
            .retire_script
            .run(
                &self.redis,
                vec![state, key.clone()],
                vec![Value::from(field), Value::from(grace_ms), Value::from(open)],
            )
            .await;
        match decision.as_deref() {
            Ok("retired") => {}
            Ok(_) => return,
            Err(err) => {
                self.metrics.dependency_error(Dependency::Redis);
                tracing::warn!(outbox = key, error = %err, "relay cannot decide whether an outbox is over");
                return;
            }
        }
        let removed = registry::retire(&self.redis, &self.prefix, &key).await;
        if removed.is_ok() {
            self.metrics.forget_outbox(outbox);
            self.metrics.observe_relay_event("retired");
            tracing::info!(
                outbox = key,
                "over and its outbox empty; relay stops watching it"
            );
        }
    }

    /// Puts back into the active set every non-empty sale, policy or point outbox found
    /// outside it. Nothing should ever be there (the retire decision is atomic; loading a sale
    /// or policy registers its outbox), so finding one is logged and counted: it means a
    /// registration failed half-way or state was restored by hand.
    pub(super) async fn sweep(&self) {
        match self.find_unwatched().await {
            Ok(found) => {
                for key in found {
                    let added = registry::register(&self.redis, &self.prefix, &key).await;
                    if added.is_ok_and(|n| n > 0) {
                        self.metrics.observe_relay_event("rediscovered");
                        tracing::warn!(
                            outbox = key,
                            "non-empty outbox outside the active set; relay watches it again"
                        );
                    }
                }
            }
            Err(err) => {
                self.metrics.dependency_error(Dependency::Redis);
                tracing::warn!(error = format!("{err:#}"), "relay sweep failed");
            }
        }
    }

    async fn find_unwatched(&self) -> anyhow::Result<Vec<String>> {
        let watched: HashSet<String> = registry::members(&self.redis, &self.prefix)
            .await?
            .into_iter()
            .collect();
        let mut pattern = String::with_capacity(self.prefix.len() + 16);
        for c in self.prefix.chars() {
            // Glob characters in the prefix match only themselves.
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        let _ = write!(pattern, ":{{*}}:outbox");
        let mut found = Vec::new();
        let client = self.redis.next();
        let mut cursor = "0".to_owned();
        loop {
            let (next, page): (String, Vec<String>) = client
                .custom(
                    fred::cmd!("SCAN"),
                    vec![
                        cursor.as_str(),
                        "MATCH",
                        pattern.as_str(),
                        "COUNT",
                        "1000",
                        "TYPE",
                        "stream",
                    ],
                )
                .await?;
            for key in page {
                // Only the exact outbox keys (a user id may end in `:outbox` too).
                let exact = Outbox::of_key(&key).is_some_and(|o| o.key(&self.prefix) == key);
                if exact && !watched.contains(&key) {
                    let length: u64 = self.redis.xlen(&key).await?;
                    if length > 0 {
                        found.push(key);
                    }
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        Ok(found)
    }
}
