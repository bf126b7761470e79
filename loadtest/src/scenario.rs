//! Which request the k-th arrival of a phase makes, and which shopper makes it.

use serde::Serialize;

use crate::options::{Mix, PayWith, RunOptions, Scenario, Shares};

/// The user id of shopper `n` of the run tagged `tag`.
pub fn user_id(tag: &str, n: u32) -> String {
    format!("{tag}-{n}")
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `POST /v1/sales/{id}/purchases` `{"quantity": 1}`.
    Purchase,
    /// `POST /v1/coupon-policies/{id}/claims`.
    Claim,
    /// `GET /v1/orders/{order_id}` of an order admitted earlier in the run, by its owner.
    Status,
    /// `POST /v1/admin/orders/{order_id}/mark-paid` by the run's manager, right after the
    /// order's admission (lifecycle).
    Pay,
    /// `POST /v1/orders/{order_id}/cancel` by the order's owner, right after its admission
    /// (lifecycle).
    Cancel,
    /// `POST /v1/orders/{order_id}/payment` `{"payment_token": ...}` by the order's owner,
    /// right after its admission (lifecycle, `--pay-with provider`).
    Payment,
}

impl Kind {
    /// The name in status counts and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Purchase => "purchase",
            Kind::Claim => "claim",
            Kind::Status => "status",
            Kind::Pay => "pay",
            Kind::Cancel => "cancel",
            Kind::Payment => "payment",
        }
    }
}

/// How the lifecycle scenario ends an admitted order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Paid at once (a manager's mark-paid, or its owner's payment through the provider):
    /// its unit stays sold.
    Pay,
    /// Its owner cancels it at once: its unit goes back on sale.
    Cancel,
    /// Nobody touches it: it expires at its `pay_by` and its unit goes back.
    Abandon,
}

impl Fate {
    /// The request that gives an order this fate, if any, when orders are paid `pay_with`.
    pub fn request(self, pay_with: PayWith) -> Option<Kind> {
        match self {
            Fate::Pay => Some(match pay_with {
                PayWith::MarkPaid => Kind::Pay,
                PayWith::Provider => Kind::Payment,
            }),
            Fate::Cancel => Some(Kind::Cancel),
            Fate::Abandon => None,
        }
    }
}

/// The fates of the admitted orders in turn: the `n`-th admission of a run gets
/// `fates[n % fates.len()]`, so every share shows up early and a run of any size keeps the
/// proportion to within one cycle.
pub fn fates(shares: Shares) -> Vec<Fate> {
    interleave(&[
        (Fate::Pay, shares.pay),
        (Fate::Cancel, shares.cancel),
        (Fate::Abandon, shares.abandon),
    ])
}

/// One cycle of `weighted` items in proportion, interleaved round-robin (so a short run still
/// sees every item), after dividing the weights by their greatest common divisor (40:30:30 is
/// a cycle of 10, not of 100).
pub fn interleave<T: Copy>(weighted: &[(T, u32)]) -> Vec<T> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let divisor = weighted.iter().fold(0, |d, (_, w)| gcd(d, *w)).max(1);
    let most = weighted.iter().map(|(_, w)| w / divisor).max().unwrap_or(0);
    let mut cycle = Vec::new();
    for round in 0..most {
        for (item, weight) in weighted {
            if round < weight / divisor {
                cycle.push(*item);
            }
        }
    }
    cycle
}

/// One request of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// What it does.
    pub kind: Kind,
    /// The shopper (an index into the run's shoppers) who sends it.
    pub shopper: u32,
}

/// The requests of one phase: a cycle of kinds over a range of shoppers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Most requests; `None` means until the phase's duration is over.
    pub total: Option<u64>,
    first_shopper: u32,
    shoppers: u32,
    pattern: Vec<Kind>,
}

impl Plan {
    /// One request of `kind` by each shopper of `first..first + count`, in order.
    pub fn each_once(kind: Kind, first: u32, count: u32) -> Self {
        Self {
            total: Some(u64::from(count)),
            first_shopper: first,
            shoppers: count,
            pattern: vec![kind],
        }
    }

    /// Requests in the proportion of `mix` (interleaved), by shoppers `first..first + count`
    /// in turn, until the duration is over.
    pub fn cycle(mix: Mix, first: u32, count: u32) -> Self {
        let pattern = interleave(&[
            (Kind::Purchase, mix.purchase),
            (Kind::Claim, mix.claim),
            (Kind::Status, mix.status),
        ]);
        Self {
            total: None,
            first_shopper: first,
            shoppers: count,
            pattern,
        }
    }

    /// The `k`-th request, or `None` past the end of the plan.
    pub fn call(&self, k: u64) -> Option<Call> {
        if self.total.is_some_and(|total| k >= total) {
            return None;
        }
        let kind = self.pattern[(k % self.pattern.len() as u64) as usize];
        let shopper = self.first_shopper + (k % u64::from(self.shoppers)) as u32;
        Some(Call { kind, shopper })
    }
}

/// The phases of a scenario: an unmeasured set-up phase (selling the sale out), then the
/// measured traffic.
pub fn phases(options: &RunOptions) -> (Option<Plan>, Plan) {
    let shoppers = options.shoppers;
    match options.scenario {
        Scenario::PurchaseRush | Scenario::Lifecycle | Scenario::QueuedRush => {
            (None, Plan::each_once(Kind::Purchase, 0, shoppers))
        }
        Scenario::CouponRush => (None, Plan::each_once(Kind::Claim, 0, shoppers)),
        Scenario::SoldOut => {
            let stock = options.stock;
            (
                Some(Plan::each_once(Kind::Purchase, 0, stock)),
                Plan::cycle(
                    Mix {
                        purchase: 1,
                        claim: 0,
                        status: 0,
                    },
                    stock,
                    shoppers - stock,
                ),
            )
        }
        Scenario::Mixed => (None, Plan::cycle(options.mix, 0, shoppers)),
    }
}

/// Whether the scenario needs a coupon policy.
pub fn needs_policy(options: &RunOptions) -> bool {
    match options.scenario {
        Scenario::CouponRush => true,
        Scenario::Mixed => options.mix.claim > 0,
        Scenario::PurchaseRush | Scenario::SoldOut | Scenario::Lifecycle | Scenario::QueuedRush => {
            false
        }
    }
}

/// Whether the scenario needs a sale.
pub fn needs_sale(options: &RunOptions) -> bool {
    options.scenario != Scenario::CouponRush
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rush_asks_each_shopper_once_then_ends() {
        let plan = Plan::each_once(Kind::Purchase, 0, 3);
        let calls: Vec<_> = (0..4).map(|k| plan.call(k).map(|c| c.shopper)).collect();
        assert_eq!(calls, [Some(0), Some(1), Some(2), None]);
    }

    #[test]
    fn sold_out_traffic_comes_from_shoppers_who_did_not_buy() {
        let mut options = RunOptions::new(Scenario::SoldOut);
        options.stock = 10;
        options.shoppers = 15;
        let (prefill, measured) = phases(&options);
        assert_eq!(prefill.expect("prefill").total, Some(10));
        let shoppers: Vec<_> = (0..7)
            .map(|k| measured.call(k).expect("unbounded").shopper)
            .collect();
        assert_eq!(shoppers, [10, 11, 12, 13, 14, 10, 11]);
    }

    #[test]
    fn a_mix_interleaves_kinds_in_proportion() {
        let plan = Plan::cycle(
            Mix {
                purchase: 2,
                claim: 1,
                status: 1,
            },
            0,
            100,
        );
        let kinds: Vec<_> = (0..4).map(|k| plan.call(k).expect("call").kind).collect();
        assert_eq!(
            kinds,
            [Kind::Purchase, Kind::Claim, Kind::Status, Kind::Purchase]
        );
    }

    #[test]
    fn fates_keep_the_shares_in_a_cycle_reduced_by_their_common_divisor() {
        use Fate::{Abandon, Cancel, Pay};
        let cycle = fates(Shares::parse("40:30:30").unwrap());
        assert_eq!(
            cycle,
            [
                Pay, Cancel, Abandon, Pay, Cancel, Abandon, Pay, Cancel, Abandon, Pay
            ]
        );
        assert_eq!(fates(Shares::parse("0:5:0").unwrap()), [Cancel]);
        assert_eq!(fates(Shares::parse("2:0:1").unwrap()), [Pay, Abandon, Pay]);
        assert_eq!(Pay.request(PayWith::MarkPaid), Some(Kind::Pay));
        assert_eq!(Pay.request(PayWith::Provider), Some(Kind::Payment));
        assert_eq!(Cancel.request(PayWith::Provider), Some(Kind::Cancel));
        assert_eq!(Abandon.request(PayWith::Provider), None);
    }

    #[test]
    fn a_lifecycle_run_asks_each_shopper_to_buy_once() {
        let mut options = RunOptions::new(Scenario::Lifecycle);
        options.shoppers = 3;
        let (setup, plan) = phases(&options);
        assert!(setup.is_none());
        assert_eq!(plan, Plan::each_once(Kind::Purchase, 0, 3));
        assert!(needs_sale(&options) && !needs_policy(&options));
    }
}
