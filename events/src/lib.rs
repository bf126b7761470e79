//! What flashgate's processes must agree on: the Kafka wire format (an envelope around each
//! event, and the events of orders, coupons and points), the limits of ids in [`ids`], and the
//! Redis key layout in [`keys`].
//!
//! The gateway (producer), the persister (consumer), the batch jobs and the load test all use
//! these types, so they can never disagree on a field name, a key or an id's length.

mod coupons;
pub mod draw;
mod envelope;
pub mod ids;
pub mod keys;
mod orders;
mod payments;
mod points;
mod sales;

pub use coupons::{
    COUPON_ISSUED, COUPON_REDEEMED, COUPON_REDEMPTION_CANCELLED, COUPON_REJECTED, CouponIssued,
    CouponRedemption, CouponRejected,
};
pub use envelope::{
    DEAD_LETTER_HEADERS, Envelope, REASON_CODE_HEADER, REPLAY_HEADER, TRACE_HEADER,
};
pub use orders::{
    ORDER_ADMITTED, ORDER_CANCELLED, ORDER_EXPIRED, ORDER_PAID, ORDER_REJECTED, OrderAdmitted,
    OrderEnd, OrderEnded, OrderRejected,
};
pub use payments::{
    PAYMENT_COMPLETED, PAYMENT_FAILED, PAYMENT_REFUND_REQUESTED, PAYMENT_REFUNDED,
    PAYMENT_REQUESTED, PaymentOutcome, PaymentRequested, RefundRequested,
};
pub use points::{
    POINTS_REFUNDED, POINTS_REJECTED, POINTS_USED, PointsRefunded, PointsRejected, PointsUsed,
    earn_txid, refund_txid, unearn_txid,
};
pub use sales::{SALE_SOLD_OUT, SaleSoldOut};
