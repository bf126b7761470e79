//! What a phase observed: latencies (hdrhistogram), answers by kind and status, who asked,
//! and the ids the gateway handed out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::StatusCode;

use crate::client::{Answer, Outcome, is_failure, label};
use crate::scenario::{Call, Kind};

/// Longest latency the histogram tracks exactly, in microseconds (a minute); longer ones are
/// recorded as this.
const HIGHEST_MICROS: u64 = 60_000_000;

/// Observations of one worker, or of a whole phase once merged.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latencies of the measured answers (after the warm-up), in microseconds.
    pub latency: Histogram<u64>,
    /// Answers by kind and outcome.
    pub answers: HashMap<(Kind, Outcome), u64>,
    /// Shoppers who asked to buy.
    pub buyers_asked: HashSet<u32>,
    /// Shoppers who asked for a coupon.
    pub claimers_asked: HashSet<u32>,
    /// `(shopper, order id)` of every 202.
    pub orders: Vec<(u32, String)>,
    /// `(shopper, coupon id)` of every 201 claim.
    pub coupons: Vec<(u32, String)>,
    /// `(shopper, order id)` of every order a mark-paid answered 200 for.
    pub paid: Vec<(u32, String)>,
    /// `(shopper, order id)` of every order a cancel answered 200 for.
    pub cancelled: Vec<(u32, String)>,
    /// `(shopper, order id)` of every order whose payment through the provider was taken
    /// (202 `payment_pending`; 200 when nothing was left to charge).
    pub payments: Vec<(u32, String)>,
    /// Answers in the measured window.
    pub measured: u64,
    /// When the last measured answer arrived.
    pub last_answer: Option<Instant>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("valid histogram bounds"),
            answers: HashMap::new(),
            buyers_asked: HashSet::new(),
            claimers_asked: HashSet::new(),
            orders: Vec::new(),
            coupons: Vec::new(),
            paid: Vec::new(),
            cancelled: Vec::new(),
            payments: Vec::new(),
            measured: 0,
            last_answer: None,
        }
    }
}

impl Tally {
    /// Records one answer; `latency` goes into the histogram when `measured`.
    pub fn record(
        &mut self,
        call: Call,
        answer: &Answer,
        latency: Duration,
        measured: bool,
        at: Instant,
    ) {
        *self
            .answers
            .entry((call.kind, answer.outcome()))
            .or_default() += 1;
        match call.kind {
            Kind::Purchase => {
                self.buyers_asked.insert(call.shopper);
            }
            Kind::Claim => {
                self.claimers_asked.insert(call.shopper);
            }
            Kind::Status | Kind::Pay | Kind::Cancel | Kind::Payment => {}
        }
        if let Answer::Http {
            status,
            id: Some(id),
            ..
        } = answer
        {
            match (call.kind, *status) {
                (Kind::Purchase, StatusCode::ACCEPTED) => {
                    self.orders.push((call.shopper, id.clone()))
                }
                (Kind::Claim, StatusCode::CREATED) => self.coupons.push((call.shopper, id.clone())),
                (Kind::Pay, StatusCode::OK) => self.paid.push((call.shopper, id.clone())),
                (Kind::Cancel, StatusCode::OK) => self.cancelled.push((call.shopper, id.clone())),
                (Kind::Payment, StatusCode::ACCEPTED | StatusCode::OK) => {
                    self.payments.push((call.shopper, id.clone()))
                }
                _ => {}
            }
        }
        if measured {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.latency
                .saturating_record(micros.clamp(1, HIGHEST_MICROS));
            self.measured += 1;
            self.last_answer = self.last_answer.max(Some(at));
        }
    }

    /// Adds `other`'s observations to these.
    pub fn merge(&mut self, other: Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms of equal bounds");
        for (key, count) in other.answers {
            *self.answers.entry(key).or_default() += count;
        }
        self.buyers_asked.extend(other.buyers_asked);
        self.claimers_asked.extend(other.claimers_asked);
        self.orders.extend(other.orders);
        self.coupons.extend(other.coupons);
        self.paid.extend(other.paid);
        self.cancelled.extend(other.cancelled);
        self.payments.extend(other.payments);
        self.measured += other.measured;
        self.last_answer = self.last_answer.max(other.last_answer);
    }

    /// Answers of `kind` with `label` (`202`, `409 sold_out`).
    pub fn count(&self, kind: Kind, label: &str) -> u64 {
        self.labelled()
            .get(&format!("{} {label}", kind.name()))
            .copied()
            .unwrap_or(0)
    }

    /// Answers by `"<kind> <status> [<code>]"`, such as `purchase 409 sold_out`.
    pub fn labelled(&self) -> BTreeMap<String, u64> {
        self.label_counts(|_| true)
    }

    /// Answers that were 5xx or never came, by label.
    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.label_counts(is_failure)
    }

    fn label_counts(&self, keep: impl Fn(Outcome) -> bool) -> BTreeMap<String, u64> {
        self.answers
            .iter()
            .filter(|((_, outcome), _)| keep(*outcome))
            .map(|((kind, outcome), count)| {
                (format!("{} {}", kind.name(), label(*outcome)), *count)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: Option<&'static str>, id: Option<&str>) -> Answer {
        Answer::Http {
            status: StatusCode::from_u16(status).unwrap(),
            code,
            id: id.map(str::to_owned),
        }
    }

    #[test]
    fn merged_tallies_count_answers_ids_and_measured_latencies() {
        let now = Instant::now();
        let buy = |shopper| Call {
            kind: Kind::Purchase,
            shopper,
        };
        let mut a = Tally::default();
        a.record(
            buy(1),
            &answer(202, None, Some("9-a")),
            Duration::from_millis(2),
            true,
            now,
        );
        let mut b = Tally::default();
        b.record(
            buy(2),
            &answer(409, Some("sold_out"), None),
            Duration::from_millis(1),
            false,
            now,
        );
        b.record(
            buy(2),
            &Answer::Failed("timeout"),
            Duration::from_secs(10),
            true,
            now,
        );
        a.merge(b);
        assert_eq!(a.count(Kind::Purchase, "202"), 1);
        assert_eq!(a.count(Kind::Purchase, "409 sold_out"), 1);
        assert_eq!(a.failures().get("purchase error: timeout"), Some(&1));
        assert_eq!(a.measured, 2, "the warm-up answer is not measured");
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.buyers_asked.len(), 2);
        assert_eq!(a.orders, [(1, "9-a".to_owned())]);
    }

    #[test]
    fn orders_paid_and_cancelled_are_kept_only_when_the_answer_was_200() {
        let now = Instant::now();
        let call = |kind| Call { kind, shopper: 4 };
        let mut tally = Tally::default();
        let ms = Duration::from_millis(1);
        tally.record(
            call(Kind::Pay),
            &answer(200, None, Some("9-p")),
            ms,
            true,
            now,
        );
        tally.record(
            call(Kind::Cancel),
            &answer(200, None, Some("9-c")),
            ms,
            true,
            now,
        );
        let refused = answer(409, Some("payment_window_closed"), None);
        tally.record(call(Kind::Pay), &refused, ms, true, now);
        let mut other = Tally::default();
        other.record(
            call(Kind::Cancel),
            &answer(200, None, Some("9-d")),
            ms,
            true,
            now,
        );
        tally.merge(other);
        assert_eq!(tally.paid, [(4, "9-p".to_owned())]);
        assert_eq!(
            tally.cancelled,
            [(4, "9-c".to_owned()), (4, "9-d".to_owned())]
        );
        assert_eq!(tally.count(Kind::Pay, "409 payment_window_closed"), 1);
        assert!(tally.buyers_asked.is_empty(), "paying is not asking to buy");
    }

    #[test]
    fn payments_through_the_provider_are_kept_when_taken_with_202_or_paid_at_once_with_200() {
        let now = Instant::now();
        let call = Call {
            kind: Kind::Payment,
            shopper: 7,
        };
        let ms = Duration::from_millis(1);
        let mut tally = Tally::default();
        tally.record(call, &answer(202, None, Some("9-a")), ms, true, now);
        let mut other = Tally::default();
        other.record(call, &answer(200, None, Some("9-b")), ms, true, now);
        other.record(
            call,
            &answer(409, Some("order_not_payable"), None),
            ms,
            true,
            now,
        );
        tally.merge(other);
        assert_eq!(
            tally.payments,
            [(7, "9-a".to_owned()), (7, "9-b".to_owned())]
        );
        assert!(tally.paid.is_empty(), "mark-paid answers are kept apart");
        assert_eq!(tally.count(Kind::Payment, "202"), 1);
        assert_eq!(tally.count(Kind::Payment, "409 order_not_payable"), 1);
    }
}
