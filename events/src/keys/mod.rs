//! Redis key names, shared by the gateway, the persister, the batch jobs and the load test.
//!
//! Every key one script touches shares one hash tag (`{s:<sale>}` for a sale, `{p:<bucket>}` for
//! a bucket of point balances), so the script stays on one Redis Cluster slot; scripts get keys
//! only through `KEYS`.

mod idempotency;
mod outbox;
mod points;
mod policy;
mod sale;

pub use outbox::{Outbox, active_outboxes};
pub use points::{POINT_BUCKETS, PointsKeys, by_points_bucket, points_bucket};
pub use policy::{PolicyKeys, live_policies};
pub use sale::{SaleKeys, live_sales, restock_channel};

/// The field of a rate limit's TAT in a sale's buyers hash or a policy's holders hash (`who`:
/// `u:<user>` or `a:<address>`), as `rate_limit_field` in `lua/rate_limit.lua` names it: the
/// byte 0xFF, which no user id has (UTF-8 never holds it), then `who`.
pub fn rate_limit_field(who: &str) -> Vec<u8> {
    let mut field = Vec::with_capacity(who.len() + 1);
    field.push(0xFF);
    field.extend_from_slice(who.as_bytes());
    field
}

/// Whether a field of a buyers or holders hash is a rate limit's TAT rather than a shopper's
/// count: whoever reads the shoppers from such a hash leaves these out.
pub fn is_rate_limit_field(field: &[u8]) -> bool {
    field.first() == Some(&0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_field_is_never_a_user_id() {
        let field = rate_limit_field("u:ann");
        assert!(is_rate_limit_field(&field));
        assert!(
            std::str::from_utf8(&field).is_err(),
            "no UTF-8 string, so no user id"
        );
        assert!(!is_rate_limit_field("u:ann".as_bytes()));
        assert!(
            !is_rate_limit_field("ÿann".as_bytes()),
            "U+00FF is 0xC3 0xBF in UTF-8"
        );
    }
}
