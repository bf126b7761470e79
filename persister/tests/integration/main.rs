//! Integration tests of the persister against the local stack's real MariaDB.

mod helpers;
mod migrations;
mod persisting;
