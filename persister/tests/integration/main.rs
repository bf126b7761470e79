//! Integration tests of the persister against the local stack's real MariaDB.

mod coupons;
mod crash;
mod dead_letters;
mod disruptive;
mod dlq;
mod dlq_throughput;
mod helpers;
mod identity;
mod lifecycle;
mod limits;
mod migrations;
mod operations;
mod ordering;
mod paid_cancels;
mod persisting;
mod points;
mod rejections;
mod reorder;
mod settling;
mod sold_out;
mod traces;
