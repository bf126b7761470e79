//! `flashgate-batch`: operator jobs. The points reconciliation (`reconcile-points`) and the
//! bulk seeding of points data (`seed-points`).

pub mod aggregate;
pub mod cache;
pub mod checkpoint;
pub mod compare;
pub mod progress;
pub mod ranges;
pub mod reconcile;
pub mod repair;
pub mod retry;
pub mod seed;
pub mod seed_data;
pub mod snapshot;
pub mod summary;
pub mod worker;
