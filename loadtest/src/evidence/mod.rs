//! The evidence a run's invariants are judged on: [`facts`] is what it is, [`read`] reads it
//! from Redis and MySQL after the traffic.

pub mod facts;
pub mod read;

pub use facts::{CouponEvidence, Evidence, SHOWN, SaleEvidence, Sample, Told};
pub use read::{
    Backends, gather, mysql_coupon_count, mysql_order_count, read_coupons, read_sale,
    redis_sale_counters,
};
