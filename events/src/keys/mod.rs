//! Redis key names, shared by the gateway, the persister, the batch jobs and the load test.
//!
//! Every key one script touches shares one hash tag (`{s:<sale>}` for a sale, `{p:<bucket>}` for
//! a bucket of point balances), so the script stays on one Redis Cluster slot; scripts get keys
//! only through `KEYS`.

mod idempotency;
mod outbox;
mod points;
mod policy;
mod sale;

pub use outbox::{Outbox, active_outboxes};
pub use points::{POINT_BUCKETS, PointsKeys, by_points_bucket, points_bucket};
pub use policy::{PolicyKeys, live_policies};
pub use sale::{SaleKeys, live_sales, restock_channel};
