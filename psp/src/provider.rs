//! [`Provider`]: the shareable handle on one book of charges. The server holds a clone; a test
//! holds another, stops the server (a provider outage) and serves the same book again, as a
//! real provider keeps its ledger across an outage of its API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::book::{Book, Counts};
use crate::charge::{Charge, Refund};

/// The provider's charges and refunds, in memory only: lost when the process ends.
#[derive(Debug, Clone, Default)]
pub struct Provider {
    book: Arc<Mutex<Book>>,
}

impl Provider {
    /// An empty provider keeping up to [`crate::book::MAX_CHARGES`] charges.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty provider keeping up to `capacity` charges (tests of a full book).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            book: Arc::new(Mutex::new(Book::with_capacity(capacity))),
        }
    }

    /// The book, locked. Every decision is made in one step under this lock (no `.await`
    /// while it is held).
    pub fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding it cannot leave a half-made charge (each step is whole), so
        // the book stays usable.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every charge, oldest first (declined ones included).
    pub fn charges(&self) -> Vec<Charge> {
        self.book().all().cloned().collect()
    }

    /// The charges made for `reference`, oldest first.
    pub fn charges_for(&self, reference: &str) -> Vec<Charge> {
        self.book()
            .all()
            .filter(|c| c.reference == reference)
            .cloned()
            .collect()
    }

    /// How many charges succeeded for each reference (refunded ones included): exactly one
    /// per paid order is what a saga must achieve.
    pub fn succeeded_by_reference(&self) -> BTreeMap<String, usize> {
        self.book().succeeded_by_reference()
    }

    /// Every refund, oldest first.
    pub fn refunds(&self) -> Vec<Refund> {
        self.book().all_refunds().to_vec()
    }

    /// How many charges (succeeded, declined) and refunds the book holds.
    pub fn counts(&self) -> Counts {
        self.book().counts()
    }
}
