//! Integration tests of the persister against the local stack's real MariaDB.

mod coupons;
mod crash;
mod disruptive;
mod helpers;
mod migrations;
mod persisting;
mod points;
