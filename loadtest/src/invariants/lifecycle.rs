//! The lifecycle's own invariants, judged once the run waited for every order it left open
//! to expire: nothing held any more, and in time; Redis's paid units are the ones the run
//! paid; every unit cancelled or expired came back. (Each of the run's orders is one unit.)

use super::Check;
use crate::evidence::{Expiry, SaleEvidence};

/// The lifecycle's own promises, once the run waited for every abandoned order to expire.
pub(super) fn checks(sale: &SaleEvidence, expiry: &Expiry) -> Vec<Check> {
    let abandoned = sale
        .answered_admitted
        .saturating_sub(sale.answered_paid + sale.answered_cancelled);
    let expired = Check::new(
        "held == 0 once every abandoned order expired (pay_by + 5 s)",
        expiry.in_time() && sale.redis_held == 0 && sale.redis_open_orders == 0,
        format!(
            "latest pay_by {}; last open order gone {} (allowed {} ms); overdue {}; \
             held {}, open orders {}",
            expiry
                .latest_pay_by_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map_or("- (none open after the traffic)".into(), |t| t.to_rfc3339()),
            expiry
                .emptied_after_ms
                .map_or("never seen".into(), |ms| format!("{ms} ms after it")),
            expiry.allowed_ms,
            expiry.overdue,
            sale.redis_held,
            sale.redis_open_orders
        ),
    );
    let paid = Check::new(
        "Redis paid == units the run paid",
        sale.redis_paid == sale.answered_paid as i64
            && sale.mysql_units.paid == sale.answered_paid
            && sale.mysql_sold == sale.answered_paid,
        format!(
            "paid by the run (mark-paid answered 200, or paid through the provider) {}; \
             Redis paid {}; MySQL paid units {}, sold {}",
            sale.answered_paid, sale.redis_paid, sale.mysql_units.paid, sale.mysql_sold
        ),
    );
    let back = Check::new(
        "every cancelled or expired unit came back",
        sale.mysql_units.cancelled == sale.answered_cancelled
            && sale.mysql_units.expired == abandoned
            && sale.redis_stock + sale.redis_paid == sale.stock as i64,
        format!(
            "cancelled: {} answered, {} in MySQL; abandoned {}, expired in MySQL {}; \
             stock {} = total {} - paid {}",
            sale.answered_cancelled,
            sale.mysql_units.cancelled,
            abandoned,
            sale.mysql_units.expired,
            sale.redis_stock,
            sale.stock,
            sale.redis_paid
        ),
    );
    vec![expired, paid, back]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{healthy_sale, names_broken, sale_only};
    use super::super::{broken, check};
    use crate::evidence::{Expiry, SaleEvidence, Sample, Units};

    /// 300 shoppers for 50 units: 70 admitted (20 units came back through cancels and were
    /// sold again), 28 paid, 21 cancelled, 21 abandoned and expired.
    fn healthy_lifecycle() -> SaleEvidence {
        SaleEvidence {
            answered_admitted: 70,
            answered_paid: 28,
            answered_cancelled: 21,
            redis_admitted: 70,
            redis_stock: 22,
            redis_held: 0,
            redis_paid: 28,
            redis_buyer_units: 28,
            redis_open_orders: 0,
            mysql_orders: 70,
            mysql_sold: 28,
            mysql_units: Units {
                paid: 28,
                cancelled: 21,
                expired: 21,
                ..Units::default()
            },
            expiry: Some(Expiry {
                allowed_ms: 5_000,
                latest_pay_by_ms: Some(1_700_000_030_000),
                emptied_after_ms: Some(900),
                overdue: Sample::default(),
            }),
            ..healthy_sale()
        }
    }

    #[test]
    fn a_healthy_lifecycle_breaks_nothing_and_adds_its_three_checks() {
        let checks = check(&sale_only(healthy_lifecycle()));
        assert!(broken(&checks).is_empty(), "{checks:#?}");
        assert_eq!(checks.len(), 1 + 8 + 3);
        assert!(
            checks[1]
                .evidence
                .contains("units given back 42 → between 50 and 92"),
            "{}",
            checks[1].evidence
        );
    }

    #[test]
    fn a_unit_given_back_twice_is_caught_by_the_balance_and_by_the_stock() {
        // One cancelled unit went back to the stock twice: the stock is one too high.
        let mut sale = healthy_lifecycle();
        sale.redis_stock = 23;
        sale.redis_unbalanced_seen =
            Sample::of(["stock 23 + held 0 + paid 28 = 51 (total 50)".to_owned()]);
        assert_eq!(
            names_broken(&sale_only(sale)),
            [
                "Redis stock + held + paid == total, never below zero",
                "every cancelled or expired unit came back"
            ]
        );
    }

    #[test]
    fn a_late_expiry_a_lost_payment_and_a_unit_sold_twice_are_each_caught() {
        let mut late = healthy_lifecycle();
        late.expiry.as_mut().expect("expiry").emptied_after_ms = Some(6_500);
        assert_eq!(
            names_broken(&sale_only(late)),
            ["held == 0 once every abandoned order expired (pay_by + 5 s)"]
        );

        // A mark-paid answered 200 but the order expired: Redis and MySQL disagree with the
        // answer, and MySQL holds the order in the wrong status.
        let mut unpaid = healthy_lifecycle();
        unpaid.answered_paid = 29;
        unpaid.mysql_wrong_status = Sample::of(["1-x: expected paid, is expired".to_owned()]);
        assert_eq!(
            names_broken(&sale_only(unpaid)),
            [
                "every order's status in MySQL is the one the run gave it",
                "MySQL sold == units in confirmed + paid orders",
                "Redis paid == units the run paid",
                "every cancelled or expired unit came back"
            ]
        );

        // By MySQL's times, 51 units of 50 were live at one instant.
        let mut twice = healthy_lifecycle();
        twice.mysql_peak_live_units = 51;
        assert_eq!(names_broken(&sale_only(twice)), ["no unit sold twice"]);
    }
}
