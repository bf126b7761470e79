//! `flashgate-batch`: operator jobs. The points reconciliation (`reconcile-points`, in
//! [`reconcile`]), the stock reconciliation (`reconcile-stock`, in [`stock`]) and the bulk
//! seeding of points data (`seed-points`, in [`seed`]); they show their [`progress`] on the
//! terminal, [`retry`] a failing step, and share their [`exit`] codes.

pub mod exit;
pub mod progress;
pub mod reconcile;
pub mod retry;
pub mod seed;
pub mod stock;
pub mod verify_draw;
