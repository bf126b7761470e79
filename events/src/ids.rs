//! How long each kind of identifier may be: one definition for the gateway that makes and
//! accepts ids, the persister that checks them on the wire, and the MySQL columns that hold
//! them (`persister/migrations`). An id longer than its column could never be stored, so it is
//! refused where it enters.

/// Longest user id (the JWT `sub`): every `user_id` column is `VARCHAR(64)`, and the id is part
/// of Redis key names.
pub const USER_ID_MAX_LEN: usize = 64;

/// Longest order id. The gateway makes `<sale_id>-<32 hex digits>` (any sale id below ten
/// million fits), and `orders.order_id` and `coupons.order_id` are `VARCHAR(40)`.
pub const ORDER_ID_MAX_LEN: usize = 40;

/// Longest coupon id (`<policy_id>-<32 hex digits>`, made by the gateway):
/// `coupons.coupon_id` is `VARCHAR(64)`.
pub const COUPON_ID_MAX_LEN: usize = 64;

/// Longest point transaction id an event may carry: `use-<32 hex>` (36), `refund-<32 hex>` (39)
/// and `earn-<order id>` (45) all fit; `point_ledger.txid` is wider (`VARCHAR(80)`).
pub const TXID_MAX_LEN: usize = 64;

/// Whether `id` has 1 to `max_len` bytes. Bytes, not characters: an id that passes never has
/// more characters than a `VARCHAR(max_len)` column holds.
pub fn fits(id: &str, max_len: usize) -> bool {
    !id.is_empty() && id.len() <= max_len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ids_the_gateway_makes_fit_their_limits() {
        let uuid = "0".repeat(32);
        assert!(fits(&format!("9999999-{uuid}"), ORDER_ID_MAX_LEN));
        assert!(fits(&format!("{}-{uuid}", u64::MAX), COUPON_ID_MAX_LEN));
        assert!(fits(&format!("refund-{uuid}"), TXID_MAX_LEN));
        let order_id = "9".repeat(ORDER_ID_MAX_LEN);
        assert!(fits(&crate::earn_txid(&order_id), TXID_MAX_LEN));
    }

    #[test]
    fn an_id_fits_with_one_to_max_len_bytes() {
        assert!(!fits("", ORDER_ID_MAX_LEN));
        assert!(fits(&"a".repeat(ORDER_ID_MAX_LEN), ORDER_ID_MAX_LEN));
        assert!(!fits(&"a".repeat(ORDER_ID_MAX_LEN + 1), ORDER_ID_MAX_LEN));
        // Two bytes each: 21 characters are 42 bytes, past the limit.
        assert!(!fits(&"é".repeat(21), ORDER_ID_MAX_LEN));
    }
}
