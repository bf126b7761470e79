//! Whether the payment provider answers, as the saga's calls find it: after a streak of calls
//! without an answer, its first answer rings once, so that the payments the outage put off
//! are tried at once (`startup::recover`) instead of each waiting out its backoff.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Notify;

/// Calls in a row without an answer (unreachable, 5xx, past the deadline) after which the
/// provider counts as down: one slow charge among answered ones is not an outage.
const DOWN_AFTER: u32 = 3;

/// Whether the provider is answering, as the calls find it: after a streak of failed calls,
/// its first answer rings [`Health::back`], so the payments the outage put off are tried at
/// once instead of each waiting out its backoff.
#[derive(Debug, Default)]
pub struct Health {
    /// Calls without an answer since the last one answered.
    streak: AtomicU32,
    /// Rung once per recovery (a permit is kept if nobody waits).
    back: Notify,
}

impl Health {
    /// Counts one call: `answered` when the provider said something definite.
    pub fn observe(&self, answered: bool) {
        if !answered {
            self.streak.fetch_add(1, Ordering::Relaxed);
        } else if self.streak.swap(0, Ordering::Relaxed) >= DOWN_AFTER {
            self.back.notify_one();
        }
    }

    /// Resolves when the provider answers again after a streak of failed calls.
    pub async fn back(&self) {
        self.back.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_provider_is_back_only_after_a_streak_of_unanswered_calls_then_an_answer() {
        let health = Health::default();
        let back = |health: &Health| {
            let notified = health.back.notified();
            tokio::pin!(notified);
            // A permit left by notify_one makes the future ready at once.
            notified.as_mut().enable()
        };
        // One slow charge among answered ones is no outage.
        health.observe(false);
        health.observe(false);
        health.observe(true);
        assert!(!back(&health), "two unanswered calls are not an outage");
        for _ in 0..DOWN_AFTER {
            health.observe(false);
        }
        assert!(!back(&health), "still down: nothing to ring yet");
        health.observe(true);
        assert!(
            back(&health),
            "the first answer after the outage rings once"
        );
        health.observe(true);
        assert!(!back(&health), "and only once");
    }
}
