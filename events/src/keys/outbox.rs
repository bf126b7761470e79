//! Outbox streams: whose events one holds (from its key's hash tag), and the set of those the
//! relay reads.

use super::{PointsKeys, PolicyKeys, SaleKeys};

/// Set of the outbox stream keys the relay reads (sales, coupon policies, point buckets).
pub fn active_outboxes(prefix: &str) -> String {
    format!("{prefix}:outboxes:active")
}

/// Whose events an outbox stream holds; its key tells (`fg:{s:42}:outbox` is sale 42's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outbox {
    /// Admitted orders of a sale.
    Sale(u64),
    /// Coupon events of a policy.
    Policy(u64),
    /// Point events of a bucket of users.
    Points(u32),
}

impl Outbox {
    /// The stream's key.
    pub fn key(self, prefix: &str) -> String {
        match self {
            Self::Sale(id) => SaleKeys::new(prefix, id).outbox,
            Self::Policy(id) => PolicyKeys::new(prefix, id).outbox,
            Self::Points(bucket) => PointsKeys::new(prefix, bucket).outbox,
        }
    }

    /// The outbox a stream key belongs to, from its hash tag.
    pub fn of_key(key: &str) -> Option<Self> {
        let start = key.find('{')? + 1;
        let end = start + key[start..].find('}')?;
        let (kind, id) = key[start..end].split_once(':')?;
        match kind {
            "s" => id.parse().ok().map(Self::Sale),
            "c" => id.parse().ok().map(Self::Policy),
            "p" => id.parse().ok().map(Self::Points),
            _ => None,
        }
    }

    /// Prometheus label naming the outbox (`sale_id="42"`).
    pub fn label(self) -> String {
        match self {
            Self::Sale(id) => format!("sale_id=\"{id}\""),
            Self::Policy(id) => format!("policy_id=\"{id}\""),
            Self::Points(bucket) => format!("points_bucket=\"{bucket}\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_key_names_its_owner() {
        for outbox in [Outbox::Sale(7), Outbox::Policy(7), Outbox::Points(3)] {
            assert_eq!(Outbox::of_key(&outbox.key("fg")), Some(outbox));
        }
        let policy = PolicyKeys::new("fg", 9);
        for key in [
            &policy.policy,
            &policy.remaining,
            &policy.holders,
            &policy.outbox,
            &policy.coupon("9-x"),
            &policy.idempotency("u", "k"),
        ] {
            assert!(key.starts_with("fg:{c:9}:"), "{key}");
        }
    }
}
