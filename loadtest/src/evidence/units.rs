//! Where a sale's units are, as the lifecycle checks see them: its counters in Redis at one
//! instant and as sampled during a run, its orders' units by status and over time in MySQL,
//! how the orders left open expired, and how the run ended the orders it was told about.
//! Pure data and arithmetic, no I/O.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::sample::Sample;

/// Units of a sale's orders, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Units {
    /// Persisted, waiting to be paid (they hold their units).
    pub confirmed: u64,
    /// Paid.
    pub paid: u64,
    /// Cancelled (their units came back).
    pub cancelled: u64,
    /// Expired (their units came back).
    pub expired: u64,
    /// Refused by the database's stock guard.
    pub rejected: u64,
}

impl Units {
    /// Adds `quantity` units of an order in `status`; false for a status it does not know.
    pub fn add(&mut self, status: &str, quantity: u64) -> bool {
        let slot = match status {
            "confirmed" => &mut self.confirmed,
            "paid" => &mut self.paid,
            "cancelled" => &mut self.cancelled,
            "expired" => &mut self.expired,
            "rejected" => &mut self.rejected,
            _ => return false,
        };
        *slot += quantity;
        true
    }

    /// Units sold: held by confirmed orders or paid.
    pub fn sold(&self) -> u64 {
        self.confirmed + self.paid
    }

    /// Units given back: cancelled or expired.
    pub fn given_back(&self) -> u64 {
        self.cancelled + self.expired
    }
}

/// A sale's counters in Redis at one instant (`sale_counters.lua`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SaleCounters {
    /// Units left.
    pub stock: i64,
    /// Units offered.
    pub total: i64,
    /// Units held by open orders.
    pub held: i64,
    /// Units in paid orders.
    pub paid: i64,
    /// Units admitted, ever.
    pub admitted: u64,
    /// Entries waiting in the outbox.
    pub outbox: u64,
    /// Open orders.
    pub open_orders: u64,
}

impl SaleCounters {
    /// Whether stock + held + paid is the total, with none of them below zero.
    pub fn balanced(&self) -> bool {
        self.stock >= 0
            && self.held >= 0
            && self.paid >= 0
            && self.stock + self.held + self.paid == self.total
    }

    /// `stock 3 + held 5 + paid 2 = 10 (total 11)`.
    pub fn describe(&self) -> String {
        format!(
            "stock {} + held {} + paid {} = {} (total {})",
            self.stock,
            self.held,
            self.paid,
            self.stock + self.held + self.paid,
            self.total
        )
    }
}

/// What the sampler saw of a sale's counters while the traffic ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sampled {
    /// Samples taken.
    pub samples: u64,
    /// The lowest stock seen (`i64::MAX` before the first sample).
    pub stock_min: i64,
    /// Samples that were not balanced ([`SaleCounters::balanced`]), described.
    pub unbalanced: Sample,
}

impl Sampled {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self {
            stock_min: i64::MAX,
            ..Self::default()
        }
    }

    /// Takes in one sample.
    pub fn add(&mut self, counters: &SaleCounters) {
        self.samples += 1;
        self.stock_min = self.stock_min.min(counters.stock);
        if !counters.balanced() {
            self.unbalanced.push(counters.describe());
        }
    }
}

/// How the orders left open after the traffic expired (by Redis's clock).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// How long after its `pay_by` an order may still be open, in ms (the promise).
    pub allowed_ms: i64,
    /// The latest `pay_by` of an order open when the traffic ended, in ms since the epoch;
    /// `None` when none was open.
    pub latest_pay_by_ms: Option<i64>,
    /// When the last open order was seen gone, in ms after that latest `pay_by` (negative
    /// when before it: every order was paid or cancelled).
    pub emptied_after_ms: Option<i64>,
    /// Orders still open past their `pay_by` + the allowance when the wait gave up.
    pub overdue: Sample,
}

impl Expiry {
    /// Whether every open order was gone within the allowance after its `pay_by`.
    pub fn in_time(&self) -> bool {
        self.overdue.count == 0
            && match self.latest_pay_by_ms {
                None => true,
                Some(_) => self
                    .emptied_after_ms
                    .is_some_and(|after| after <= self.allowed_ms),
            }
    }
}

/// An order's units over time, by its times in MySQL (ms, Redis's clock): held from its
/// admission until it was cancelled or expired (or for good: confirmed, paid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    /// Units.
    pub quantity: u64,
    /// Admitted at.
    pub from_ms: i64,
    /// Given back at, if it was.
    pub until_ms: Option<i64>,
}

/// The most units held at one instant by `holdings`. At the same millisecond a give-back
/// counts before an admission: Redis runs one script at a time, so a unit given back and
/// sold again in one millisecond was given back first.
pub fn peak_live_units(holdings: &[Holding]) -> u64 {
    let mut steps: Vec<(i64, i64)> = Vec::with_capacity(holdings.len() * 2);
    for h in holdings {
        let units = h.quantity as i64;
        steps.push((h.from_ms, units));
        if let Some(until) = h.until_ms {
            steps.push((until, -units));
        }
    }
    steps.sort_unstable();
    let (mut live, mut peak) = (0i64, 0i64);
    for (_, change) in steps {
        live += change;
        peak = peak.max(live);
    }
    peak.max(0) as u64
}

/// How the run ended the orders it was told about: the ids a mark-paid and a cancel answered
/// 200 for, and whether it waited for the others to expire.
pub struct Endings<'a> {
    /// Orders paid.
    pub paid: HashSet<&'a str>,
    /// Orders cancelled.
    pub cancelled: HashSet<&'a str>,
    /// Whether the run waited until every open order expired.
    pub expiry_awaited: bool,
}

impl Endings<'_> {
    /// The status MySQL should show for `order_id`, one of the run's orders.
    pub fn expected(&self, order_id: &str) -> &'static str {
        if self.paid.contains(order_id) {
            "paid"
        } else if self.cancelled.contains(order_id) {
            "cancelled"
        } else if self.expiry_awaited {
            "expired"
        } else {
            "confirmed"
        }
    }

    /// The run's orders (`granted`) whose status in MySQL (`stored`: id → status) is not the
    /// expected one; an order missing from MySQL is counted as lost elsewhere.
    pub fn wrong_status(
        &self,
        granted: &[(String, String)],
        stored: &HashMap<&str, &str>,
    ) -> Sample {
        let mut wrong: Vec<String> = granted
            .iter()
            .filter_map(|(_, id)| {
                let status = stored.get(id.as_str())?;
                let expected = self.expected(id);
                (*status != expected).then(|| format!("{id}: expected {expected}, is {status}"))
            })
            .collect();
        wrong.sort();
        Sample::of(wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(quantity: u64, from_ms: i64, until_ms: Option<i64>) -> Holding {
        Holding {
            quantity,
            from_ms,
            until_ms,
        }
    }

    #[test]
    fn a_unit_given_back_and_sold_again_counts_once_even_in_the_same_millisecond() {
        // Stock 2: a and b sell it out; a is cancelled at 5 and c buys the unit at 5; b
        // expires at 9 and d buys at 12.
        let holdings = [
            held(1, 1, Some(5)),
            held(1, 2, Some(9)),
            held(1, 5, None),
            held(1, 12, None),
        ];
        assert_eq!(peak_live_units(&holdings), 2);
        // The same unit sold twice: c admitted before a gave it back.
        let twice = [held(1, 1, Some(5)), held(1, 2, None), held(1, 4, None)];
        assert_eq!(peak_live_units(&twice), 3);
        assert_eq!(peak_live_units(&[]), 0);
    }

    #[test]
    fn counters_balance_only_when_the_parts_add_up_to_the_total_and_none_is_negative() {
        let mut counters = SaleCounters {
            stock: 3,
            total: 10,
            held: 5,
            paid: 2,
            ..SaleCounters::default()
        };
        assert!(counters.balanced());
        counters.held = 6;
        assert!(!counters.balanced());
        assert_eq!(
            counters.describe(),
            "stock 3 + held 6 + paid 2 = 11 (total 10)"
        );
        let negative = SaleCounters {
            stock: -1,
            total: 10,
            held: 11,
            ..SaleCounters::default()
        };
        assert!(!negative.balanced());

        let mut sampled = Sampled::new();
        sampled.add(&negative);
        sampled.add(&SaleCounters {
            stock: 4,
            total: 4,
            ..SaleCounters::default()
        });
        assert_eq!(sampled.samples, 2);
        assert_eq!(sampled.stock_min, -1);
        assert_eq!(sampled.unbalanced.count, 1);
    }

    #[test]
    fn units_by_status_split_into_sold_and_given_back() {
        let mut units = Units::default();
        for (status, n) in [
            ("confirmed", 1),
            ("paid", 4),
            ("cancelled", 3),
            ("expired", 2),
            ("rejected", 7),
        ] {
            assert!(units.add(status, n));
        }
        assert!(!units.add("reserved", 1));
        assert_eq!((units.sold(), units.given_back()), (5, 5));
    }

    #[test]
    fn an_order_is_expected_paid_cancelled_or_else_expired_once_expiry_was_awaited() {
        let granted: Vec<(String, String)> = ["p", "c", "a"]
            .iter()
            .map(|id| ("u".to_owned(), (*id).to_owned()))
            .collect();
        let mut endings = Endings {
            paid: ["p"].into(),
            cancelled: ["c"].into(),
            expiry_awaited: true,
        };
        let stored: HashMap<&str, &str> =
            [("p", "paid"), ("c", "cancelled"), ("a", "confirmed")].into();
        let wrong = endings.wrong_status(&granted, &stored);
        assert_eq!(wrong.first, ["a: expected expired, is confirmed"]);
        endings.expiry_awaited = false;
        assert_eq!(endings.wrong_status(&granted, &stored).count, 0);
    }

    #[test]
    fn expiry_is_in_time_when_the_last_open_order_went_within_the_allowance() {
        let mut expiry = Expiry {
            allowed_ms: 5_000,
            latest_pay_by_ms: Some(1_000),
            emptied_after_ms: Some(1_200),
            overdue: Sample::default(),
        };
        assert!(expiry.in_time());
        expiry.emptied_after_ms = Some(5_001);
        assert!(!expiry.in_time());
        expiry.emptied_after_ms = None;
        assert!(!expiry.in_time());
        expiry.latest_pay_by_ms = None;
        assert!(expiry.in_time(), "nothing was open");
        expiry.overdue = Sample::of(["1-x".to_owned()]);
        assert!(!expiry.in_time());
    }
}
