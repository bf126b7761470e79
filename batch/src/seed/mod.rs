//! `seed-points`: fills EMPTY points tables with realistic data at scale, fast: users are cut
//! into chunks, and parallel workers generate each chunk's ledger and balances (consistent with
//! each other) and write them with large multi-row `INSERT`s in primary-key order.
//!
//! Why not `LOAD DATA LOCAL INFILE`: sqlx 0.9 does not implement the local-infile protocol
//! (launchbadge/sqlx#1766). Multi-row inserts of a few thousand rows, keys ascending within
//! each worker (entry ids, user ids and transaction ids are all generated in order), keep every
//! index append-mostly, so the indexes stay in place and the schema is never altered.

pub mod data;
mod job;

pub use job::{SeedOptions, SeedSummary, run};
