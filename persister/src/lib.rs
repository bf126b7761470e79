//! The persister: MySQL is the system of record; this crate owns its schema.

pub mod db;
