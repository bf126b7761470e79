//! Integration tests of the batch jobs against the local stack's real MariaDB and Redis.

mod cli;
mod drift;
mod helpers;
mod resume;
mod stock;
mod verify_draw;
