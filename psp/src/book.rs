//! The provider's book: every charge, found by id, by idempotency key and by reference, and
//! the decision on a new charge — made in one step under the book's lock, so two requests
//! under one key never both charge. Refunds are in `refunds.rs`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::charge::{Charge, ChargeRequest, ChargeStatus, Invalid, Refund};
use crate::token::{Token, Verdict};

/// Most charges one provider keeps (about 400 bytes each). Past it, new charges are answered
/// 503 `provider_full`: the book never grows without bound, and a process that filled it is
/// restarted (its charges are in memory only anyway).
pub const MAX_CHARGES: usize = 1_000_000;

/// A charge as kept: the charge, and when its first answer is due.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) charge: Charge,
    /// When the request that made it is answered (`tok_slow`: `psp.slow_ms` after it was
    /// recorded); a replay under its key is not answered before.
    pub(crate) answer_at: Instant,
    /// Its refund's index in `Book::refunds`.
    pub(crate) refund: Option<usize>,
}

/// Every charge and refund the provider made since it started.
#[derive(Debug)]
pub struct Book {
    /// Most charges kept, and most references `tok_flaky` counts failures for.
    capacity: usize,
    /// In the order they were made: lists page through them by position.
    pub(crate) charges: Vec<Kept>,
    pub(crate) by_id: HashMap<String, usize>,
    /// The charge each idempotency key made.
    by_key: HashMap<String, usize>,
    by_reference: HashMap<String, Vec<usize>>,
    /// Requests answered 503 per reference because of `tok_flaky`.
    flaky: HashMap<String, u8>,
    pub(crate) refunds: Vec<Refund>,
    /// The refund each refund idempotency key made.
    pub(crate) refund_keys: HashMap<String, usize>,
    succeeded: usize,
}

/// What became of a charge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// Recorded now (succeeded or declined); answered at `answer_at`.
    Recorded {
        /// The charge.
        charge: Charge,
        /// When its answer is due.
        answer_at: Instant,
    },
    /// The key made this charge before, with the same request: the same answer, never sooner
    /// than the first request's.
    Replayed {
        /// The charge as it is now (a refund made since shows).
        charge: Charge,
        /// When the first request's answer is due.
        answer_at: Instant,
    },
    /// The key made a charge for another request (422).
    KeyReused,
    /// 503 and nothing recorded: the key stays free for a retry.
    Unavailable(Unavailable),
    /// The book holds [`MAX_CHARGES`]: 503 `provider_full`, nothing recorded.
    Full,
}

/// Why a charge was answered 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The random share of `psp.failure_share`.
    Random,
    /// `tok_flaky`, still failing for this reference.
    Flaky,
}

/// One page of a list of charges, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Page {
    /// The charges.
    pub charges: Vec<Charge>,
    /// Whether more follow (ask again with `starting_after` the last id).
    pub has_more: bool,
}

/// How much the book holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Charges recorded (succeeded and declined).
    pub charges: usize,
    /// Of them, succeeded (refunded or not).
    pub succeeded: usize,
    /// Of them, declined.
    pub declined: usize,
    /// Refunds made.
    pub refunds: usize,
}

impl Default for Book {
    fn default() -> Self {
        Self::with_capacity(MAX_CHARGES)
    }
}

impl Book {
    /// An empty book that keeps at most `capacity` charges.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            charges: Vec::new(),
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            by_reference: HashMap::new(),
            flaky: HashMap::new(),
            refunds: Vec::new(),
            refund_keys: HashMap::new(),
            succeeded: 0,
        }
    }

    /// Decides and records the charge `request` under `key` at `now`. `unlucky`: this request
    /// falls in the random failure share (it spares a replay, which answers what was decided).
    /// A `tok_slow` charge is recorded now and answered `slow` later.
    pub fn charge(
        &mut self,
        key: &str,
        request: &ChargeRequest,
        unlucky: bool,
        slow: Duration,
        now: Instant,
    ) -> Charged {
        if let Some(&index) = self.by_key.get(key) {
            let kept = &self.charges[index];
            return if kept.charge.matches(request) {
                Charged::Replayed {
                    charge: kept.charge.clone(),
                    answer_at: kept.answer_at,
                }
            } else {
                Charged::KeyReused
            };
        }
        if unlucky {
            return Charged::Unavailable(Unavailable::Random);
        }
        if self.charges.len() >= self.capacity {
            return Charged::Full;
        }
        let token = Token::parse(&request.payment_token);
        let failed_before = match token {
            Token::Flaky => self.flaky.get(&request.reference).copied().unwrap_or(0),
            _ => 0,
        };
        let (status, failure_code, answer_at) = match token.verdict(failed_before) {
            Verdict::Unavailable => {
                if !self.flaky.contains_key(&request.reference) && self.flaky.len() >= self.capacity
                {
                    return Charged::Full;
                }
                *self.flaky.entry(request.reference.clone()).or_default() += 1;
                return Charged::Unavailable(Unavailable::Flaky);
            }
            Verdict::Succeed { slow: false } => (ChargeStatus::Succeeded, None, now),
            Verdict::Succeed { slow: true } => (ChargeStatus::Succeeded, None, now + slow),
            Verdict::Decline(code) => (ChargeStatus::Declined, Some(code), now),
        };
        let charge = Charge {
            id: new_id("ch"),
            status,
            amount: request.amount,
            currency: request.currency.clone(),
            payment_token: request.payment_token.clone(),
            reference: request.reference.clone(),
            idempotency_key: key.to_owned(),
            created_at: Utc::now(),
            failure_code,
            refunded: false,
            refund: None,
        };
        let index = self.charges.len();
        self.by_id.insert(charge.id.clone(), index);
        self.by_key.insert(key.to_owned(), index);
        self.by_reference
            .entry(charge.reference.clone())
            .or_default()
            .push(index);
        if charge.succeeded() {
            self.succeeded += 1;
        }
        self.charges.push(Kept {
            charge: charge.clone(),
            answer_at,
            refund: None,
        });
        Charged::Recorded { charge, answer_at }
    }

    /// The charge with this id.
    pub fn get(&self, id: &str) -> Option<&Charge> {
        self.by_id.get(id).map(|&i| &self.charges[i].charge)
    }

    /// The charge made under this idempotency key.
    pub fn by_key(&self, key: &str) -> Option<&Charge> {
        self.by_key.get(key).map(|&i| &self.charges[i].charge)
    }

    /// Up to `limit` charges (of `reference` when given), oldest first, after the charge
    /// `starting_after` when given (an id this book does not hold is refused).
    pub fn list(
        &self,
        reference: Option<&str>,
        starting_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, Invalid> {
        let after = match starting_after {
            Some(id) => match self.by_id.get(id) {
                Some(&index) => Some(index),
                None => return Err(Invalid(format!("starting_after: no charge {id}"))),
            },
            None => None,
        };
        let first = after.map_or(0, |index| index + 1);
        let indices: Box<dyn Iterator<Item = usize>> = match reference {
            Some(reference) => Box::new(
                self.by_reference
                    .get(reference)
                    .map(|v| v.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .copied()
                    .filter(move |&i| i >= first),
            ),
            None => Box::new(first..self.charges.len()),
        };
        let mut charges: Vec<Charge> = indices
            .take(limit + 1)
            .map(|i| self.charges[i].charge.clone())
            .collect();
        let has_more = charges.len() > limit;
        charges.truncate(limit);
        Ok(Page { charges, has_more })
    }

    /// Every charge, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Charge> {
        self.charges.iter().map(|kept| &kept.charge)
    }

    /// Successful charges per reference (refunded ones included).
    pub fn succeeded_by_reference(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for charge in self.all().filter(|c| c.succeeded()) {
            *counts.entry(charge.reference.clone()).or_default() += 1;
        }
        counts
    }

    /// How much the book holds.
    pub fn counts(&self) -> Counts {
        Counts {
            charges: self.charges.len(),
            succeeded: self.succeeded,
            declined: self.charges.len() - self.succeeded,
            refunds: self.refunds.len(),
        }
    }
}

/// A fresh id: `prefix`, `_`, 32 hex digits.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::token::FailureCode;

    pub(crate) fn request(token: &str, reference: &str, amount: u64) -> ChargeRequest {
        ChargeRequest {
            amount,
            currency: "usd".into(),
            payment_token: token.into(),
            reference: reference.into(),
        }
    }

    pub(crate) fn charge(book: &mut Book, key: &str, request: &ChargeRequest) -> Charged {
        book.charge(key, request, false, Duration::from_secs(5), Instant::now())
    }

    pub(crate) fn recorded(charged: Charged) -> Charge {
        match charged {
            Charged::Recorded { charge, .. } => charge,
            other => panic!("not recorded: {other:?}"),
        }
    }

    #[test]
    fn the_same_key_with_the_same_request_replays_the_charge_and_with_another_is_refused() {
        let mut book = Book::default();
        let asked = request("tok_ok", "ord-1", 1200);
        let first = recorded(charge(&mut book, "k1", &asked));

        let again = charge(&mut book, "k1", &asked);
        let other = charge(&mut book, "k1", &request("tok_ok", "ord-1", 1300));

        assert_eq!(first.status, ChargeStatus::Succeeded);
        assert!(matches!(again, Charged::Replayed { charge, .. } if charge == first));
        assert_eq!(other, Charged::KeyReused);
        assert_eq!(book.counts().charges, 1);
    }

    #[test]
    fn a_declined_charge_is_recorded_and_replayed_as_declined() {
        let mut book = Book::default();
        let asked = request("tok_declined", "ord-1", 500);
        let first = recorded(charge(&mut book, "k1", &asked));
        let invalid = recorded(charge(&mut book, "k2", &request("tok_nope", "ord-2", 500)));

        let again = charge(&mut book, "k1", &asked);

        assert_eq!(first.status, ChargeStatus::Declined);
        assert_eq!(first.failure_code, Some(FailureCode::CardDeclined));
        assert_eq!(invalid.failure_code, Some(FailureCode::InvalidToken));
        assert!(matches!(again, Charged::Replayed { charge, .. } if charge.id == first.id));
        assert_eq!(
            book.counts(),
            Counts {
                charges: 2,
                succeeded: 0,
                declined: 2,
                refunds: 0
            }
        );
    }

    #[test]
    fn a_flaky_token_fails_twice_per_reference_recording_nothing_then_succeeds_under_the_same_key()
    {
        let mut book = Book::default();
        let asked = request("tok_flaky", "ord-1", 700);

        let first = charge(&mut book, "k1", &asked);
        let second = charge(&mut book, "k1", &asked);
        let looked_up = book.by_key("k1").cloned();
        let third = recorded(charge(&mut book, "k1", &asked));
        let other_reference = charge(&mut book, "k2", &request("tok_flaky", "ord-2", 700));

        assert_eq!(first, Charged::Unavailable(Unavailable::Flaky));
        assert_eq!(second, Charged::Unavailable(Unavailable::Flaky));
        assert_eq!(looked_up, None, "nothing recorded while it fails");
        assert_eq!(third.status, ChargeStatus::Succeeded);
        assert_eq!(other_reference, Charged::Unavailable(Unavailable::Flaky));
    }

    #[test]
    fn an_unlucky_request_records_nothing_and_leaves_its_key_free_but_a_replay_is_spared() {
        let mut book = Book::default();
        let asked = request("tok_ok", "ord-1", 100);
        let now = Instant::now();
        let slow = Duration::from_secs(5);

        let unlucky = book.charge("k1", &asked, true, slow, now);
        let first = recorded(book.charge("k1", &asked, false, slow, now));
        let replay = book.charge("k1", &asked, true, slow, now);

        assert_eq!(unlucky, Charged::Unavailable(Unavailable::Random));
        assert!(matches!(replay, Charged::Replayed { charge, .. } if charge == first));
    }

    #[test]
    fn a_slow_charge_is_recorded_at_once_and_its_replay_is_not_answered_before_it() {
        let mut book = Book::default();
        let asked = request("tok_slow", "ord-1", 100);
        let now = Instant::now();
        let slow = Duration::from_millis(800);

        let first = book.charge("k1", &asked, false, slow, now);
        let found = book.by_key("k1").map(|c| c.status);
        let replay = book.charge("k1", &asked, false, slow, now + Duration::from_millis(10));

        assert!(matches!(first, Charged::Recorded { answer_at, .. } if answer_at == now + slow));
        assert_eq!(found, Some(ChargeStatus::Succeeded));
        assert!(matches!(replay, Charged::Replayed { answer_at, .. } if answer_at == now + slow));
    }

    #[test]
    fn a_full_book_refuses_new_charges_but_still_replays() {
        let mut book = Book::with_capacity(2);
        let first = request("tok_ok", "ord-1", 100);
        recorded(charge(&mut book, "k1", &first));
        recorded(charge(&mut book, "k2", &request("tok_ok", "ord-2", 100)));

        let full = charge(&mut book, "k3", &request("tok_ok", "ord-3", 100));
        let replay = charge(&mut book, "k1", &first);

        assert_eq!(full, Charged::Full);
        assert!(matches!(replay, Charged::Replayed { .. }));
    }

    #[test]
    fn lists_page_oldest_first_by_reference_and_refuse_an_unknown_cursor() {
        let mut book = Book::default();
        let ids: Vec<String> = (0..5)
            .map(|i| {
                let reference = if i % 2 == 0 { "even" } else { "odd" };
                recorded(charge(
                    &mut book,
                    &format!("k{i}"),
                    &request("tok_ok", reference, 1),
                ))
                .id
            })
            .collect();

        let first = book.list(None, None, 2).expect("page");
        let next = book.list(None, Some(&ids[1]), 2).expect("page");
        let even = book.list(Some("even"), Some(&ids[1]), 10).expect("page");
        let none = book.list(Some("nobody"), None, 10).expect("page");

        let page_ids = |page: &Page| {
            page.charges
                .iter()
                .map(|c| c.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(page_ids(&first), ids[0..2]);
        assert!(first.has_more);
        assert_eq!(page_ids(&next), ids[2..4]);
        assert_eq!(page_ids(&even), [ids[2].clone(), ids[4].clone()]);
        assert!(!even.has_more);
        assert!(none.charges.is_empty());
        assert!(book.list(None, Some("ch_unknown"), 2).is_err());
        assert_eq!(
            book.succeeded_by_reference(),
            BTreeMap::from([("even".into(), 3), ("odd".into(), 2)])
        );
    }
}
