//! The invariants every run checks, judged on the evidence alone (pure, so a deliberately
//! broken piece of evidence can be shown to be caught).

use serde::Serialize;

use crate::evidence::{CouponEvidence, Evidence};

mod lifecycle;
mod payments;
mod sale;

/// One invariant's verdict, with the evidence it was judged on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What must hold.
    pub name: &'static str,
    /// Whether it held.
    pub held: bool,
    /// The numbers behind the verdict.
    pub evidence: String,
}

impl Check {
    fn new(name: &'static str, held: bool, evidence: String) -> Self {
        Self {
            name,
            held,
            evidence,
        }
    }
}

/// Every invariant that applies to the evidence, held or not.
pub fn check(evidence: &Evidence) -> Vec<Check> {
    let mut checks = vec![no_failures(evidence)];
    if let Some(sale) = &evidence.sale {
        checks.extend(sale::checks(sale));
    }
    if let Some(coupons) = &evidence.coupons {
        checks.extend(coupon_checks(coupons));
    }
    checks
}

/// The checks that did not hold.
pub fn broken(checks: &[Check]) -> Vec<&Check> {
    checks.iter().filter(|c| !c.held).collect()
}

fn no_failures(evidence: &Evidence) -> Check {
    let described: Vec<String> = evidence
        .failures
        .iter()
        .map(|(label, n)| format!("{label}: {n}"))
        .collect();
    Check::new(
        "no 5xx (and every request answered)",
        described.is_empty(),
        if described.is_empty() {
            "no 5xx answers, no request left unanswered".into()
        } else {
            described.join("; ")
        },
    )
}

fn coupon_checks(coupons: &CouponEvidence) -> Vec<Check> {
    let within = Check::new(
        "coupons issued <= total",
        coupons.issued <= coupons.total
            && coupons.answered_issued <= coupons.total
            && coupons.mysql_coupons <= coupons.total
            && coupons.remaining >= 0
            && coupons.answered_issued == coupons.issued
            && coupons.issued == coupons.total.min(coupons.demand),
        format!(
            "total {}, demand {} → expected {}; 201 answers {}, issued {}, remaining {}, in MySQL {}",
            coupons.total,
            coupons.demand,
            coupons.total.min(coupons.demand),
            coupons.answered_issued,
            coupons.issued,
            coupons.remaining,
            coupons.mysql_coupons
        ),
    );
    let persisted = Check::new(
        "coupons in MySQL == issued",
        coupons.mysql_coupons == coupons.issued
            && coupons.mysql_rejected == 0
            && coupons.lost.count == 0
            && coupons.unknown.count == 0,
        format!(
            "MySQL rows {}, rejected {}, issued {}; told but not in MySQL {}; in MySQL but never told {}",
            coupons.mysql_coupons,
            coupons.mysql_rejected,
            coupons.issued,
            coupons.lost,
            coupons.unknown
        ),
    );
    let limits = Check::new(
        "per-user coupon limits held",
        coupons.answered_over_limit.count == 0 && coupons.mysql_over_limit.count == 0,
        format!(
            "limit {} per shopper; over it: by answers {}, in MySQL {}",
            coupons.per_user_limit, coupons.answered_over_limit, coupons.mysql_over_limit
        ),
    );
    vec![within, persisted, limits]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{SaleEvidence, Sample, Units};

    pub(super) fn healthy_sale() -> SaleEvidence {
        SaleEvidence {
            sale_id: 1,
            stock: 50,
            per_user_limit: 1,
            demand: 300,
            answered_admitted: 50,
            redis_admitted: 50,
            redis_stock: 0,
            redis_total: 50,
            redis_held: 50,
            redis_buyer_units: 50,
            redis_open_orders: 50,
            redis_stock_min_seen: 0,
            redis_samples: 20,
            mysql_orders: 50,
            mysql_sold: 50,
            mysql_units: Units {
                confirmed: 50,
                ..Units::default()
            },
            mysql_peak_live_units: 50,
            ..SaleEvidence::default()
        }
    }

    pub(super) fn sale_only(sale: SaleEvidence) -> Evidence {
        Evidence {
            sale: Some(sale),
            ..Evidence::default()
        }
    }

    fn healthy_coupons() -> CouponEvidence {
        CouponEvidence {
            policy_id: 1,
            total: 20,
            per_user_limit: 1,
            demand: 100,
            answered_issued: 20,
            issued: 20,
            remaining: 0,
            mysql_coupons: 20,
            ..CouponEvidence::default()
        }
    }

    pub(super) fn names_broken(evidence: &Evidence) -> Vec<&'static str> {
        broken(&check(evidence)).iter().map(|c| c.name).collect()
    }

    #[test]
    fn healthy_evidence_breaks_nothing() {
        let evidence = Evidence {
            failures: vec![],
            sale: Some(healthy_sale()),
            coupons: Some(healthy_coupons()),
        };
        let checks = check(&evidence);
        assert_eq!(checks.len(), 12);
        assert!(broken(&checks).is_empty(), "{checks:#?}");
    }

    #[test]
    fn an_extra_order_in_mysql_is_caught_and_named() {
        let mut sale = healthy_sale();
        sale.mysql_orders = 51;
        sale.unknown = Sample::of(["1-forged".to_owned()]);
        let evidence = Evidence {
            sale: Some(sale),
            ..Evidence::default()
        };
        let checks = check(&evidence);
        let broken = broken(&checks);
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].name, "orders in MySQL == admitted");
        assert!(
            broken[0]
                .evidence
                .contains("in MySQL but never told 1 (1-forged)"),
            "{}",
            broken[0].evidence
        );
    }

    #[test]
    fn a_lost_order_an_oversell_and_a_5xx_are_each_caught() {
        let mut sale = healthy_sale();
        sale.lost = Sample::of(["1-gone".to_owned()]);
        assert_eq!(
            names_broken(&Evidence {
                sale: Some(sale),
                ..Evidence::default()
            }),
            ["orders in MySQL == admitted"]
        );

        let mut oversold = healthy_sale();
        oversold.redis_stock_min_seen = -1;
        oversold.answered_admitted = 51;
        assert_eq!(
            names_broken(&Evidence {
                sale: Some(oversold),
                ..Evidence::default()
            }),
            [
                "admitted == min(stock, demand)",
                "Redis stock + held + paid == total, never below zero",
                // 51 admissions answered, 50 sold in MySQL.
                "MySQL sold == units in confirmed + paid orders"
            ]
        );

        let failing = Evidence {
            failures: vec![("purchase 500 internal".into(), 3)],
            sale: Some(healthy_sale()),
            ..Evidence::default()
        };
        assert_eq!(
            names_broken(&failing),
            ["no 5xx (and every request answered)"]
        );
    }

    #[test]
    fn a_user_over_the_limit_and_coupons_past_the_total_are_caught() {
        let mut sale = healthy_sale();
        sale.mysql_over_limit = Sample::of(["shopper-7: 2".to_owned()]);
        let mut coupons = healthy_coupons();
        coupons.issued = 21;
        coupons.answered_issued = 21;
        coupons.remaining = -1;
        let evidence = Evidence {
            sale: Some(sale),
            coupons: Some(coupons),
            ..Evidence::default()
        };
        assert_eq!(
            names_broken(&evidence),
            [
                "per-user limits held",
                "coupons issued <= total",
                "coupons in MySQL == issued"
            ]
        );
    }
}
