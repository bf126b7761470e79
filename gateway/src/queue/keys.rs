//! The Redis keys of a sale's waiting room: all under the sale's hash tag (`{s:<id>}`), so
//! the queue scripts and `lua/sale_cleanup.lua` stay on one Cluster slot.

/// The keys of one sale's waiting room (what each holds: `lua/queue_join.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// Hash: settings and counters.
    pub q: String,
    /// Hash: ticket id → `user\nstatus\nposition\npass_expiry_ms`.
    pub tickets: String,
    /// Hash: user id → ticket id.
    pub users: String,
    /// Sorted set: waiting ticket → last poll (ms).
    pub seen: String,
    /// Sorted set: ticket joined before the start → arrival number.
    pub pre: String,
    /// Sorted set: ticket joined after the start, before the draw ran → arrival number.
    pub late: String,
    /// Sorted set: waiting ticket → position.
    pub line: String,
    /// Sorted set: admitted ticket → pass expiry (ms): the passes outstanding.
    pub active: String,
}

impl QueueKeys {
    /// Keys of `sale_id`'s waiting room under `prefix`.
    pub fn new(prefix: &str, sale_id: u64) -> Self {
        let base = format!("{prefix}:{{s:{sale_id}}}:q");
        Self {
            tickets: format!("{base}:tickets"),
            users: format!("{base}:users"),
            seen: format!("{base}:seen"),
            pre: format!("{base}:pre"),
            late: format!("{base}:late"),
            line: format!("{base}:line"),
            active: format!("{base}:active"),
            q: base,
        }
    }

    /// Every key, in the order `lua/sale_cleanup.lua` takes them after the sale's own.
    pub fn all(&self) -> Vec<String> {
        [
            &self.q,
            &self.tickets,
            &self.users,
            &self.seen,
            &self.pre,
            &self.late,
            &self.line,
            &self.active,
        ]
        .into_iter()
        .cloned()
        .collect()
    }
}

/// Set of the ids of sales whose waiting room is in Redis: the admitter's list. A sale joins
/// it when its room is loaded and leaves it when the admitter finds the room gone (cleaned up
/// with the sale).
pub fn live_queues(prefix: &str) -> String {
    format!("{prefix}:queues:live")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SaleKeys;

    #[test]
    fn the_queue_keys_share_the_sale_hash_tag() {
        let sale = SaleKeys::new("fg", 42);
        for key in QueueKeys::new("fg", 42).all() {
            assert!(key.starts_with("fg:{s:42}:q"), "{key}");
            assert!(!sale.lifecycle().contains(&key), "{key}");
        }
    }
}
