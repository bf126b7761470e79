//! `reconcile-points`: recompute every user's balance from the ledger, compare it with the
//! balance table and the Redis cache, report (and with `--fix` repair) what differs.
//!
//! `job.rs` runs it. One producer walks user ids ([`ranges`]) and hands ranges over a bounded
//! channel to the workers ([`worker`]), which read a range in one snapshot ([`snapshot`],
//! [`caches`]), judge each user ([`compare`]), repair ([`repair`], [`caches`]) and report
//! ([`report`]); an aggregator ([`aggregate`]) adds the reports up in key order into the
//! [`summary`] and keeps a [`checkpoint`], so a killed run resumes where it stopped.

pub mod aggregate;
pub mod caches;
pub mod checkpoint;
pub mod compare;
mod job;
pub mod ranges;
pub mod repair;
pub mod report;
pub mod snapshot;
pub mod summary;
pub mod worker;

pub use job::{Options, ReconcileArgs, run};
