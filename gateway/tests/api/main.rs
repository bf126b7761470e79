//! Integration tests of the gateway against the local stack's real Redis (through
//! Sentinel), MariaDB and Kafka-protocol broker. `scripts/test.sh` brings the stack up.

mod admin;
mod auth;
mod breakers;
mod cleanup;
mod console;
mod contract;
mod coupons;
mod cursors;
mod discounts;
mod disruptive;
mod helpers;
mod identity;
mod lifecycle;
mod lifecycle_keys;
mod lifecycle_rush;
mod operations;
mod orders;
mod outbox;
mod payments;
mod points;
mod private_redis;
mod purchase;
mod queue;
mod queue_draw;
mod queue_support;
mod rate_limits;
mod readiness;
mod relay_watch;
mod replays;
mod restore_pages;
mod revocation;
mod routes;
mod shutdown;
mod sweeper_crash;
mod trace;
