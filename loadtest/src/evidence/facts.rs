//! The facts the invariants are judged on: what the shoppers were told, and what Redis and
//! MySQL hold after the run. Pure data, no I/O.

use std::collections::HashSet;

use serde::Serialize;

use super::payments::PaymentEvidence;
use super::sample::Sample;
use super::units::{Expiry, Units};

/// The sale of a run, seen by the shoppers, by Redis and by MySQL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SaleEvidence {
    /// The sale.
    pub sale_id: u64,
    /// Units it offered.
    pub stock: u64,
    /// Most units per shopper.
    pub per_user_limit: u64,
    /// Distinct shoppers who asked to buy (each wants one unit).
    pub demand: u64,
    /// 202 answers the shoppers got.
    pub answered_admitted: u64,
    /// Shoppers who got more 202s than the limit allows.
    pub answered_over_limit: Sample,
    /// Of the 202s, orders a manager's mark-paid answered 200 for (lifecycle).
    pub answered_paid: u64,
    /// Of the 202s, orders their owner's cancel answered 200 for (lifecycle).
    pub answered_cancelled: u64,
    /// Units admitted, by the sale's counter in Redis (every admission, re-sold units too).
    pub redis_admitted: u64,
    /// Units left in Redis after the run.
    pub redis_stock: i64,
    /// The sale's `total` in Redis.
    pub redis_total: i64,
    /// Units held by open orders in Redis after the run.
    pub redis_held: i64,
    /// Units in paid orders in Redis after the run.
    pub redis_paid: i64,
    /// Open orders in Redis after the run (the `holds` set).
    pub redis_open_orders: u64,
    /// Units the sale's buyers hold in Redis (the per-user counts), summed.
    pub redis_buyer_units: i64,
    /// The lowest stock seen in Redis while the run went on (sampled).
    pub redis_stock_min_seen: i64,
    /// Samples of the counters taken while the run went on.
    pub redis_samples: u64,
    /// Samples where stock + held + paid was not the total, or a counter was below zero.
    pub redis_unbalanced_seen: Sample,
    /// Buyers whose units in Redis pass the limit.
    pub redis_over_limit: Sample,
    /// Entries still in the sale's outbox (not yet in Kafka).
    pub outbox_left: u64,
    /// Order rows of the sale in MySQL (any status).
    pub mysql_orders: u64,
    /// Of those, rows the database's stock guard rejected.
    pub mysql_rejected: u64,
    /// The sale's `sold` column.
    pub mysql_sold: u64,
    /// Units of the sale's orders in MySQL, by status.
    pub mysql_units: Units,
    /// Orders whose status in MySQL is not the one the run gave them (`id: expected X, is Y`).
    pub mysql_wrong_status: Sample,
    /// The most units held or paid at one instant, by the orders' times in MySQL (admitted,
    /// then cancelled or expired): a unit sold twice would push it past the total.
    pub mysql_peak_live_units: u64,
    /// How the abandoned orders expired, when the run waited for them (lifecycle).
    pub expiry: Option<Expiry>,
    /// The orders paid through the provider and how they ended (lifecycle, `--pay-with
    /// provider`).
    pub payments: Option<PaymentEvidence>,
    /// What `flashgate-batch reconcile-stock --sale <id>` said after the drain.
    pub reconcile_stock: Reconciled,
    /// Orders the shoppers were told about (202) that MySQL does not have.
    pub lost: Sample,
    /// Orders in MySQL no shopper was told about.
    pub unknown: Sample,
    /// Users whose units in MySQL pass the limit.
    pub mysql_over_limit: Sample,
}

/// What the operators' stock reconciliation (`flashgate-batch reconcile-stock`, run on the
/// sale alone, without `--fix`) said after the drain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    /// Its exit code: 0 clean; 2 drift, or the sale not drained; 1 it could not run.
    pub exit_code: u8,
    /// Its findings (each as its JSON), or why it could not run.
    pub findings: Sample,
}

/// The coupon policy of a run, seen by the shoppers, by the gateway and by MySQL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CouponEvidence {
    /// The policy.
    pub policy_id: u64,
    /// Coupons it offered.
    pub total: u64,
    /// Most coupons per shopper.
    pub per_user_limit: u64,
    /// Distinct shoppers who asked for a coupon.
    pub demand: u64,
    /// 201 answers the shoppers got.
    pub answered_issued: u64,
    /// Shoppers who got more 201s than the limit allows.
    pub answered_over_limit: Sample,
    /// `issued` of the policy, as the manager API shows it (live, from Redis).
    pub issued: u64,
    /// `remaining` of the policy, as the manager API shows it.
    pub remaining: i64,
    /// Coupon rows of the policy in MySQL, not counting rejected ones.
    pub mysql_coupons: u64,
    /// Coupon rows the database's guard rejected.
    pub mysql_rejected: u64,
    /// Coupons the shoppers were told about (201) that MySQL does not have.
    pub lost: Sample,
    /// Coupons in MySQL no shopper was told about.
    pub unknown: Sample,
    /// Users holding more coupons of the policy than the limit, in MySQL.
    pub mysql_over_limit: Sample,
}

/// Everything the invariants are judged on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// Answers that were 5xx or never came, by label.
    pub failures: Vec<(String, u64)>,
    /// The sale, when the run had one.
    pub sale: Option<SaleEvidence>,
    /// The coupon policy, when the run had one.
    pub coupons: Option<CouponEvidence>,
}

/// What the shoppers of a sale were told: who asked, and `(user, order id)` of each 202.
pub struct Told<'a> {
    /// Distinct shoppers who asked.
    pub demand: u64,
    /// `(user id, id)` of every success answer.
    pub granted: &'a [(String, String)],
}

impl Told<'_> {
    /// The users told yes more than `limit` times, with how many.
    pub(super) fn over_limit(&self, limit: u64) -> Sample {
        let mut per_user: std::collections::HashMap<&str, u64> = Default::default();
        for (user, _) in self.granted {
            *per_user.entry(user).or_default() += 1;
        }
        let mut over: Vec<String> = per_user
            .into_iter()
            .filter(|(_, n)| *n > limit)
            .map(|(user, n)| format!("{user}: {n}"))
            .collect();
        over.sort();
        Sample::of(over)
    }

    /// (told but not stored, stored but never told), comparing ids.
    pub(super) fn compare(&self, stored: &[String]) -> (Sample, Sample) {
        let told: HashSet<&str> = self.granted.iter().map(|(_, id)| id.as_str()).collect();
        let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
        let mut lost: Vec<String> = told
            .iter()
            .filter(|id| !stored_set.contains(*id))
            .map(|id| (*id).to_owned())
            .collect();
        lost.sort();
        let unknown = stored
            .iter()
            .filter(|id| !told.contains(id.as_str()))
            .cloned();
        (Sample::of(lost), Sample::of(unknown))
    }
}
