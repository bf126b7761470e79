//! Which rate-limit class a route is in, from its name in the route table (so the table needs
//! no column of its own, and a new route falls into a class without being listed here).

use flashgate_config::RateClass;

/// The class of the route named `name`: the purchase and the coupon claim are their own (the
/// limit is judged inside their script, per sale or per policy); managers' and operators'
/// routes (`admin_...`) are `admin`; every other signed-in route — a shopper's reads and the
/// shopper's other writes (cancel, pay, redeem, points, the waiting room, logout) — is `read`.
pub fn class_of(name: &str) -> RateClass {
    match name {
        "purchase" => RateClass::Purchase,
        "coupon_claim" => RateClass::Claim,
        admin if admin.starts_with("admin_") => RateClass::Admin,
        _ => RateClass::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_into_their_classes_by_name() {
        assert_eq!(class_of("purchase"), RateClass::Purchase);
        assert_eq!(class_of("coupon_claim"), RateClass::Claim);
        assert_eq!(class_of("admin_create_sale"), RateClass::Admin);
        assert_eq!(class_of("admin_mark_paid"), RateClass::Admin);
        assert_eq!(class_of("my_orders"), RateClass::Read);
        assert_eq!(class_of("order_cancel"), RateClass::Read);
        assert_eq!(class_of("points_use"), RateClass::Read);
    }
}
