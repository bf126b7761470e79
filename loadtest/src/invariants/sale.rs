//! The invariants of a run's sale: what was admitted against the demand and the stock, Redis's
//! stock balance, the orders in MySQL and their statuses, units sold once, the per-user limit,
//! and `reconcile-stock`'s verdict.

use super::{Check, lifecycle, payments};
use crate::evidence::SaleEvidence;

/// Every invariant of a run's sale: its admissions, stock, orders in MySQL, statuses, units
/// sold, limits and reconciliation; with the lifecycle's and the payments' own when it had them.
pub(super) fn checks(sale: &SaleEvidence) -> Vec<Check> {
    let mut checks = vec![
        admitted(sale),
        balanced(sale),
        persisted(sale),
        statuses(sale),
        sold(sale),
        sold_once(sale),
        limits(sale),
        reconciled(sale),
    ];
    if let Some(expiry) = &sale.expiry {
        checks.extend(lifecycle::checks(sale, expiry));
    }
    if let Some(paid) = &sale.payments {
        checks.extend(payments::checks(paid));
    }
    checks
}

/// How many admissions the shoppers' demand and the stock allow. Without ends every shopper
/// up to the stock is admitted; with them, units given back are sold again to the shoppers
/// still coming, so at least that many and at most stock + units given back.
fn admitted(sale: &SaleEvidence) -> Check {
    let counted = format!(
        "202 answers {}, admitted in Redis {}",
        sale.answered_admitted, sale.redis_admitted
    );
    let least = sale.stock.min(sale.demand);
    if sale.expiry.is_none() {
        return Check::new(
            "admitted == min(stock, demand)",
            sale.answered_admitted == least && sale.redis_admitted == least,
            format!(
                "stock {}, demand {} → expected {least}; {counted}",
                sale.stock, sale.demand
            ),
        );
    }
    let given_back = sale.mysql_units.given_back();
    let most = sale.demand.min(sale.stock + given_back);
    Check::new(
        "min(stock, demand) <= admitted <= min(demand, stock + units given back)",
        sale.answered_admitted == sale.redis_admitted
            && (least..=most).contains(&sale.answered_admitted),
        format!(
            "stock {}, demand {}, units given back {given_back} → between {least} and {most}; \
             {counted}",
            sale.stock, sale.demand
        ),
    )
}

/// stock + held + paid = total at every moment, none below zero: sampled during the run and
/// read at its end; the buyers' per-user counts add up to the units held and paid.
fn balanced(sale: &SaleEvidence) -> Check {
    let fin = crate::evidence::SaleCounters {
        stock: sale.redis_stock,
        total: sale.redis_total,
        held: sale.redis_held,
        paid: sale.redis_paid,
        ..Default::default()
    };
    Check::new(
        "Redis stock + held + paid == total, never below zero",
        fin.balanced()
            && sale.redis_total == sale.stock as i64
            && sale.redis_stock_min_seen >= 0
            && sale.redis_unbalanced_seen.count == 0
            && sale.redis_buyer_units == sale.redis_held + sale.redis_paid,
        format!(
            "at the end {} of {} offered; lowest stock seen {}; {} samples, unbalanced {}; \
             buyers' units {}",
            fin.describe(),
            sale.stock,
            sale.redis_stock_min_seen,
            sale.redis_samples,
            sale.redis_unbalanced_seen,
            sale.redis_buyer_units
        ),
    )
}

fn persisted(sale: &SaleEvidence) -> Check {
    Check::new(
        "orders in MySQL == admitted",
        sale.mysql_orders == sale.redis_admitted
            && sale.lost.count == 0
            && sale.unknown.count == 0
            && sale.mysql_rejected == 0
            && sale.outbox_left == 0,
        format!(
            "MySQL rows {}, rejected {}; admitted in Redis {}; still in the outbox {}; \
             told but not in MySQL {}; in MySQL but never told {}",
            sale.mysql_orders,
            sale.mysql_rejected,
            sale.redis_admitted,
            sale.outbox_left,
            sale.lost,
            sale.unknown
        ),
    )
}

/// Each order the run was told about is in MySQL as the run left it: paid, cancelled, else
/// expired once the run waited for expiry, else confirmed.
fn statuses(sale: &SaleEvidence) -> Check {
    let u = &sale.mysql_units;
    Check::new(
        "every order's status in MySQL is the one the run gave it",
        sale.mysql_wrong_status.count == 0,
        format!(
            "units confirmed {}, paid {}, cancelled {}, expired {}, rejected {}; wrong {}",
            u.confirmed, u.paid, u.cancelled, u.expired, u.rejected, sale.mysql_wrong_status
        ),
    )
}

/// Units the run's answers leave sold: paid ones, and the ones still open unless the run
/// waited for them to expire.
fn expected_sold(sale: &SaleEvidence) -> u64 {
    let open = sale
        .answered_admitted
        .saturating_sub(sale.answered_paid + sale.answered_cancelled);
    sale.answered_paid + if sale.expiry.is_some() { 0 } else { open }
}

fn sold(sale: &SaleEvidence) -> Check {
    let units = sale.mysql_units.sold();
    let expected = expected_sold(sale);
    Check::new(
        "MySQL sold == units in confirmed + paid orders",
        sale.mysql_sold == units && sale.mysql_sold == expected,
        format!(
            "sold {}; units confirmed {} + paid {} = {units}; the run's answers leave {expected}",
            sale.mysql_sold, sale.mysql_units.confirmed, sale.mysql_units.paid
        ),
    )
}

/// No unit held or paid by two orders at once: by the orders' times in MySQL, never more units
/// live than the sale offered.
fn sold_once(sale: &SaleEvidence) -> Check {
    Check::new(
        "no unit sold twice",
        sale.mysql_peak_live_units <= sale.stock && sale.mysql_units.sold() <= sale.stock,
        format!(
            "most units held or paid at one instant (MySQL's order times) {} of {}; \
             confirmed + paid now {}",
            sale.mysql_peak_live_units,
            sale.stock,
            sale.mysql_units.sold()
        ),
    )
}

fn limits(sale: &SaleEvidence) -> Check {
    Check::new(
        "per-user limits held",
        sale.answered_over_limit.count == 0
            && sale.redis_over_limit.count == 0
            && sale.mysql_over_limit.count == 0,
        format!(
            "limit {} per shopper; over it: by answers {}, in Redis {}, in MySQL {}",
            sale.per_user_limit,
            sale.answered_over_limit,
            sale.redis_over_limit,
            sale.mysql_over_limit
        ),
    )
}

/// The operators' own tool agrees: `flashgate-batch reconcile-stock` finds no drift.
fn reconciled(sale: &SaleEvidence) -> Check {
    let r = &sale.reconcile_stock;
    Check::new(
        "reconcile-stock finds Redis and MySQL agree",
        r.exit_code == 0,
        format!(
            "`flashgate-batch reconcile-stock --sale {}` exit {}; findings {}",
            sale.sale_id, r.exit_code, r.findings
        ),
    )
}
