//! Refunds in the book: every succeeded charge is refunded at most once, in full; asking again
//! (with any key or none) answers the refund already made.

use chrono::Utc;

use crate::book::{Book, new_id};
use crate::charge::{Refund, RefundBody};

/// What became of a refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refunded {
    /// Made now.
    Made(Refund),
    /// Made before (by this key, or by an earlier request for the charge): the same refund.
    Again(Refund),
    /// No charge has this id (404).
    NoSuchCharge,
    /// The charge was declined: there is nothing to give back (409).
    NotRefundable,
    /// The key made the refund of another charge (422).
    KeyReused,
    /// The body asked for a part of the charge (400): refunds are full.
    PartialAmount {
        /// The charge's whole amount.
        charge_amount: u64,
    },
}

impl Book {
    /// Refunds the charge `charge_id` in full, once. `key` binds to the refund it makes; a key
    /// sent with a request that finds the refund already made is not kept (so retries under
    /// fresh keys never grow the book).
    pub fn refund(&mut self, charge_id: &str, key: Option<&str>, body: &RefundBody) -> Refunded {
        if let Some(&made) = key.and_then(|key| self.refund_keys.get(key)) {
            let refund = &self.refunds[made];
            return if refund.charge == charge_id {
                Refunded::Again(refund.clone())
            } else {
                Refunded::KeyReused
            };
        }
        let Some(&index) = self.by_id.get(charge_id) else {
            return Refunded::NoSuchCharge;
        };
        let kept = &mut self.charges[index];
        if !kept.charge.succeeded() {
            return Refunded::NotRefundable;
        }
        if body
            .amount
            .is_some_and(|amount| amount != kept.charge.amount)
        {
            return Refunded::PartialAmount {
                charge_amount: kept.charge.amount,
            };
        }
        if let Some(made) = kept.refund {
            return Refunded::Again(self.refunds[made].clone());
        }
        let refund = Refund {
            id: new_id("re"),
            charge: kept.charge.id.clone(),
            amount: kept.charge.amount,
            currency: kept.charge.currency.clone(),
            status: "succeeded",
            reason: body.reason.clone(),
            idempotency_key: key.map(str::to_owned),
            created_at: Utc::now(),
        };
        kept.charge.refunded = true;
        kept.charge.refund = Some(refund.id.clone());
        kept.refund = Some(self.refunds.len());
        if let Some(key) = key {
            self.refund_keys.insert(key.to_owned(), self.refunds.len());
        }
        self.refunds.push(refund.clone());
        Refunded::Made(refund)
    }

    /// Every refund, oldest first.
    pub fn all_refunds(&self) -> &[Refund] {
        &self.refunds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::tests::{charge, recorded, request};

    fn full() -> RefundBody {
        RefundBody::default()
    }

    #[test]
    fn a_charge_is_refunded_once_and_asking_again_with_any_key_answers_the_same_refund() {
        let mut book = Book::default();
        let paid = recorded(charge(&mut book, "k1", &request("tok_ok", "ord-1", 900)));

        let made = book.refund(&paid.id, Some("refund:ord-1"), &full());
        let Refunded::Made(refund) = made else {
            panic!("not made: {made:?}");
        };
        let same_key = book.refund(&paid.id, Some("refund:ord-1"), &full());
        let no_key = book.refund(&paid.id, None, &full());
        let other_key = book.refund(&paid.id, Some("another"), &full());

        assert_eq!(refund.amount, 900);
        assert_eq!(refund.charge, paid.id);
        assert!(refund.id.starts_with("re_"));
        for again in [same_key, no_key, other_key] {
            assert_eq!(again, Refunded::Again(refund.clone()));
        }
        assert_eq!(book.all_refunds().len(), 1);
        let now = book.get(&paid.id).expect("kept");
        assert!(now.refunded);
        assert_eq!(now.refund.as_deref(), Some(refund.id.as_str()));
    }

    #[test]
    fn declined_and_unknown_charges_a_part_of_a_charge_and_a_key_of_another_refund_are_refused() {
        let mut book = Book::default();
        let declined = recorded(charge(&mut book, "k1", &request("tok_declined", "o1", 5)));
        let paid = recorded(charge(&mut book, "k2", &request("tok_ok", "o2", 5)));
        let other = recorded(charge(&mut book, "k3", &request("tok_ok", "o3", 5)));
        assert!(matches!(
            book.refund(&paid.id, Some("r1"), &full()),
            Refunded::Made(_)
        ));
        let part = RefundBody {
            amount: Some(4),
            reason: None,
        };

        assert_eq!(
            book.refund(&declined.id, None, &full()),
            Refunded::NotRefundable
        );
        assert_eq!(
            book.refund("ch_nope", None, &full()),
            Refunded::NoSuchCharge
        );
        assert_eq!(
            book.refund(&other.id, None, &part),
            Refunded::PartialAmount { charge_amount: 5 }
        );
        assert_eq!(
            book.refund(&other.id, Some("r1"), &full()),
            Refunded::KeyReused
        );
        assert_eq!(book.counts().refunds, 1);
    }
}
