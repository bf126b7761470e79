//! Which request the k-th arrival of a phase makes, and which shopper makes it.

use serde::Serialize;

use crate::options::{Mix, RunOptions, Scenario};

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
}

impl Kind {
    /// The name in status counts and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Purchase => "purchase",
            Kind::Claim => "claim",
            Kind::Status => "status",
        }
    }
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
        let mut pattern = Vec::new();
        let most = mix.purchase.max(mix.claim).max(mix.status);
        // Round-robin over the weights, so a short run still sees every kind.
        for round in 0..most {
            for (kind, weight) in [
                (Kind::Purchase, mix.purchase),
                (Kind::Claim, mix.claim),
                (Kind::Status, mix.status),
            ] {
                if round < weight {
                    pattern.push(kind);
                }
            }
        }
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
        Scenario::PurchaseRush => (None, Plan::each_once(Kind::Purchase, 0, shoppers)),
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
        Scenario::PurchaseRush | Scenario::SoldOut => false,
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
}
