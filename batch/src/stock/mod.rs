//! `reconcile-stock`: compare every sale's Redis counters (stock, held, paid, total) with what
//! MySQL says they must be after the drain, report drift, and with `--fix` repair it.
//!
//! `job.rs` runs it: MySQL is read a page of sales at a time ([`mysql`]), Redis one sale at a
//! time in one script call ([`redis`]); each sale is judged ([`judge`]); sales in flight or
//! drifting are looked at again until they settle; confirmed drift is repaired (`repair.rs`)
//! by a compare-and-set; everything lands in the [`report`], printed as JSON or as text
//! (`text.rs`).
//!
//! No checkpoint, unlike `reconcile-points`: a run reads a few rows per sale (seconds for
//! thousands of sales), and every repair is an absolute, conditional set, so a killed run is
//! simply run again.

mod job;
pub mod judge;
pub mod mysql;
mod prometheus;
pub mod redis;
mod repair;
pub mod report;
mod text;

pub use job::{Options, StockArgs, run};
