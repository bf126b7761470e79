//! The choices a run is made of, each a type of its own: the scenario, the loop, the mixed
//! scenario's weights, the lifecycle's shares and how it pays, and the provider's test tokens.

use clap::ValueEnum;
use serde::Serialize;

/// The traffic a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `shoppers` distinct shoppers, one sale with `stock` units opening at a set instant,
    /// each shopper wants one unit.
    PurchaseRush,
    /// A sale sold out by `stock` shoppers first (not measured); then purchases by the other
    /// shoppers, which all find it sold out (measured).
    SoldOut,
    /// `shoppers` distinct shoppers each claim one coupon of a policy with `coupons` coupons.
    CouponRush,
    /// Purchases, coupon claims and status polls of admitted orders, in the `mix` proportion.
    Mixed,
    /// `shoppers` distinct shoppers each want one unit; each admitted order is then paid (a
    /// manager's mark-paid, or its owner's payment through the provider: `pay_with`),
    /// cancelled by its owner or abandoned, in the `lifecycle_shares` proportion. Cancelled
    /// units go back on sale to the shoppers still coming; the drain waits until every order
    /// paid through the provider is final and every abandoned order has expired (its
    /// `pay_by` + 5 s).
    Lifecycle,
    /// A sale behind a waiting room (draw mode): `joiners` shoppers join before its start,
    /// poll their tickets, and buy with their pass once admitted at `admit_per_second`
    /// (crate::queued).
    QueuedRush,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PurchaseRush => "purchase-rush",
            Scenario::SoldOut => "sold-out",
            Scenario::CouponRush => "coupon-rush",
            Scenario::Mixed => "mixed",
            Scenario::Lifecycle => "lifecycle",
            Scenario::QueuedRush => "queued-rush",
        }
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A constant arrival rate; latency is measured from each request's intended send time
    /// (corrected for coordinated omission, as wrk2 and k6's constant-arrival-rate do).
    Open,
    /// Every connection sends its next request as soon as the previous answer arrived: the
    /// maximum throughput; latency is measured from the actual send.
    Closed,
}

/// Shares of each request kind in the `mixed` scenario, as `purchase:claim:status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// Weight of purchases.
    pub purchase: u32,
    /// Weight of coupon claims (0: no coupon policy is created).
    pub claim: u32,
    /// Weight of order-status polls.
    pub status: u32,
}

impl Mix {
    /// Parses `6:2:2`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let [purchase, claim, status] = three_weights(text, "purchase:claim:status", "6:2:2")?;
        if purchase == 0 {
            return Err(format!("`{text}`: purchases must weigh at least 1"));
        }
        Ok(Self {
            purchase,
            claim,
            status,
        })
    }
}

/// How the lifecycle scenario ends its admitted orders, as weights `pay:cancel:abandon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shares {
    /// Weight of orders a manager marks paid.
    pub pay: u32,
    /// Weight of orders their owner cancels.
    pub cancel: u32,
    /// Weight of orders left to expire.
    pub abandon: u32,
}

impl Shares {
    /// Parses `40:30:30`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let [pay, cancel, abandon] = three_weights(text, "pay:cancel:abandon", "40:30:30")?;
        Ok(Self {
            pay,
            cancel,
            abandon,
        })
    }
}

/// How the lifecycle scenario pays the orders of its `pay` share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayWith {
    /// `POST /v1/admin/orders/{id}/mark-paid` by the run's manager: paid at once, no
    /// provider (what the runs before payments measured).
    MarkPaid,
    /// `POST /v1/orders/{id}/payment` with `payment_token` by the order's owner: the saga
    /// charges the provider and ends the order (a `flashgate-saga` and a `flashgate-psp` must
    /// be running beside the gateway).
    Provider,
}

impl PayWith {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PayWith::MarkPaid => "mark-paid",
            PayWith::Provider => "provider",
        }
    }
}

/// The status an order paid through the provider with `token` ends in (the virtual
/// provider's test tokens): `tok_ok`, `tok_flaky` (503 twice, then charged) and `tok_slow`
/// (charged, answered too late; the saga finds it by its key) end `paid`; any other token is
/// declined, and the order `cancelled` (reason `payment_declined`).
pub fn payment_ends(token: &str) -> &'static str {
    match token {
        "tok_ok" | "tok_flaky" | "tok_slow" => "paid",
        _ => "cancelled",
    }
}

/// Whether `token` has the shape the gateway takes: 1 to 128 letters, digits, `_` or `-`
/// (anything else would make every payment a 400).
pub(crate) fn well_formed_token(token: &str) -> bool {
    (1..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Parses three weights `a:b:c` (named by `shape`, such as `example`), not all zero.
fn three_weights(text: &str, shape: &str, example: &str) -> Result<[u32; 3], String> {
    let not_weights = || format!("`{text}` is not {shape}, such as {example}");
    let parts: Vec<u32> = text
        .split(':')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| not_weights())?;
    match parts[..] {
        [a, b, c] if u64::from(a) + u64::from(b) + u64::from(c) > 0 => Ok([a, b, c]),
        [_, _, _] => Err(format!("`{text}`: at least one weight must be above 0")),
        _ => Err(not_weights()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_three_weights_with_purchases() {
        assert_eq!(
            Mix::parse("6:2:2"),
            Ok(Mix {
                purchase: 6,
                claim: 2,
                status: 2
            })
        );
        assert!(Mix::parse("0:1:1").is_err());
        assert!(Mix::parse("1:2").is_err());
        assert!(Mix::parse("a:b:c").is_err());
    }

    #[test]
    fn lifecycle_shares_parse_three_weights_any_of_them_zero_but_not_all() {
        assert_eq!(
            Shares::parse("40:30:30"),
            Ok(Shares {
                pay: 40,
                cancel: 30,
                abandon: 30
            })
        );
        assert_eq!(
            Shares::parse(" 0 : 1 : 0 "),
            Ok(Shares {
                pay: 0,
                cancel: 1,
                abandon: 0
            })
        );
        assert!(Shares::parse("0:0:0").unwrap_err().contains("above 0"));
        assert!(
            Shares::parse("1:1")
                .unwrap_err()
                .contains("pay:cancel:abandon")
        );
        assert!(Shares::parse("1:1:1:1").is_err());
        assert!(Shares::parse("1:-1:1").is_err());
        assert!(Shares::parse("4294967295:4294967295:4294967295").is_ok());
    }

    #[test]
    fn the_test_tokens_that_end_paid_are_ok_flaky_and_slow_any_other_is_declined() {
        for token in ["tok_ok", "tok_flaky", "tok_slow"] {
            assert_eq!(payment_ends(token), "paid", "{token}");
        }
        for token in ["tok_declined", "tok_whatever", "TOK_OK"] {
            assert_eq!(payment_ends(token), "cancelled", "{token}");
        }
    }
}
