//! `flashgate-batch`: operator jobs. The points reconciliation (`reconcile-points`, in
//! [`reconcile`]) and the bulk seeding of points data (`seed-points`, in [`seed`]); both show
//! their [`progress`] on the terminal.

pub mod progress;
pub mod reconcile;
pub mod seed;
