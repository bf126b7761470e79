//! How often the relay reads an outbox: on every turn while entries keep coming, then less and
//! less often while it stays empty (20 ms doubling to 100 ms), so that a gateway with quiet
//! outboxes asks Redis about each of them ten times a second rather than a hundred. Every live
//! sale's and policy's outbox is read by every gateway, so this is what an idle fleet costs
//! Redis. The first entry after a quiet spell waits at most [`Pacing::MAX_WAIT`] more.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The empty reads in a row of each quiet outbox, and when it is due again.
pub struct Pacing<K> {
    quiet: HashMap<K, (u32, Instant)>,
}

impl<K: Copy + Eq + Hash> Default for Pacing<K> {
    fn default() -> Self {
        Self {
            quiet: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Pacing<K> {
    /// The wait after the first empty read; it doubles with each further one.
    pub const FIRST_WAIT: Duration = Duration::from_millis(20);
    /// The longest wait between two reads of an empty outbox.
    pub const MAX_WAIT: Duration = Duration::from_millis(100);

    /// Whether `outbox` is to be read at `now`.
    pub fn due(&self, outbox: K, now: Instant) -> bool {
        self.quiet.get(&outbox).is_none_or(|(_, at)| *at <= now)
    }

    /// Records a read of `outbox` at `now` that delivered `count` entries.
    pub fn read(&mut self, outbox: K, count: usize, now: Instant) {
        if count > 0 {
            self.quiet.remove(&outbox);
            return;
        }
        let (empty, at) = self.quiet.entry(outbox).or_insert((0, now));
        *empty = empty.saturating_add(1);
        let wait = Self::FIRST_WAIT
            .saturating_mul(1 << (*empty - 1).min(16))
            .min(Self::MAX_WAIT);
        *at = now + wait;
    }

    /// Forgets the outboxes `keep` refuses (retired ones).
    pub fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.quiet.retain(|outbox, _| keep(outbox));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_outbox_is_read_less_and_less_often_up_to_the_longest_wait() {
        let mut pacing = Pacing::default();
        let start = Instant::now();
        assert!(pacing.due(7, start), "an outbox never read is due");
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..6 {
            pacing.read(7, 0, now);
            let ms = |m| now + Duration::from_millis(m);
            let wait = (1..=1_000)
                .find(|m| pacing.due(7, ms(*m)))
                .expect("due again within a second");
            assert!(!pacing.due(7, ms(wait - 1)));
            waits.push(wait);
            now = ms(wait);
        }
        assert_eq!(waits, [20, 40, 80, 100, 100, 100]);
        assert!(pacing.due(8, start), "another outbox keeps its own pace");
    }

    #[test]
    fn entries_make_an_outbox_due_on_every_turn_again() {
        let mut pacing = Pacing::default();
        let now = Instant::now();
        for _ in 0..5 {
            pacing.read("a", 0, now);
        }
        assert!(!pacing.due("a", now + Duration::from_millis(50)));
        pacing.read("a", 3, now);
        assert!(pacing.due("a", now));
        pacing.read("a", 0, now);
        assert!(pacing.due("a", now + Pacing::<&str>::FIRST_WAIT));
    }

    #[test]
    fn retired_outboxes_are_forgotten() {
        let mut pacing = Pacing::default();
        let now = Instant::now();
        pacing.read(1, 0, now);
        pacing.read(2, 0, now);
        pacing.retain(|outbox| *outbox == 2);
        assert!(pacing.due(1, now));
        assert!(!pacing.due(2, now));
    }
}
