//! Loyalty points as shoppers use them: the balance cached in Redis (rebuilt from MySQL on a
//! miss), spending on an order and giving a use back through one script and the bucket's
//! outbox, and the ledger.

pub mod actions;
pub mod cache;
pub mod ledger;
pub mod refund;
pub mod spend;
