//! The evidence a run's invariants are judged on: [`facts`] is what it is, [`units`] where a
//! sale's units are (the lifecycle's arithmetic), [`payments`] how the orders paid through the
//! provider ended, [`sample`] the counted-and-shown ids they all use, [`read`] reads it from Redis and MySQL after the traffic.

pub mod facts;
pub mod payments;
pub mod read;
pub mod sample;
pub mod units;

pub use facts::{CouponEvidence, Evidence, Reconciled, SaleEvidence, Told};
pub use payments::{PaymentEvidence, Settled, Spread};
pub use read::{
    Backends, PaymentsRun, SaleRun, gather, mysql_coupon_count, mysql_order_count, read_coupons,
    read_sale, redis_sale_counters,
};
pub use sample::{SHOWN, Sample};
pub use units::{Endings, Expiry, Holding, SaleCounters, Sampled, Units, peak_live_units};
