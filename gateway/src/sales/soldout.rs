//! Sold-out answers from memory: once a sale is sold out, further buyers are told so without
//! a Redis trip. An entry lives at most `ttl`; a restock message on Redis pub/sub clears it
//! at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sales seen sold out, and when.
pub struct SoldOutCache {
    ttl: Duration,
    // Bounded by the number of sales; entries past their TTL are pruned on insert.
    seen: Mutex<HashMap<u64, Instant>>,
}

impl SoldOutCache {
    /// A cache whose entries expire after `ttl` (0 disables it).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `sale_id` was seen sold out within the TTL.
    pub fn is_sold_out(&self, sale_id: u64) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        self.seen
            .lock()
            .expect("sold-out lock")
            .get(&sale_id)
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Records that `sale_id` has no stock left. Only for what the purchase script found just
    /// now: a stored answer replayed for an idempotency key tells how the sale stood when the
    /// key was first used, and marking from it would refuse buyers while stock remains.
    pub fn mark(&self, sale_id: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut seen = self.seen.lock().expect("sold-out lock");
        if seen.len() >= 4_096 {
            let ttl = self.ttl;
            seen.retain(|_, at| at.elapsed() < ttl);
        }
        seen.insert(sale_id, Instant::now());
    }

    /// Forgets `sale_id` (stock came back).
    pub fn clear(&self, sale_id: u64) {
        self.seen.lock().expect("sold-out lock").remove(&sale_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_expire_and_can_be_cleared() {
        let cache = SoldOutCache::new(Duration::from_secs(60));
        assert!(!cache.is_sold_out(1));
        cache.mark(1);
        assert!(cache.is_sold_out(1));
        cache.clear(1);
        assert!(!cache.is_sold_out(1));

        let expired = SoldOutCache::new(Duration::from_nanos(1));
        expired.mark(2);
        std::thread::sleep(Duration::from_millis(1));
        assert!(!expired.is_sold_out(2));
    }
}
