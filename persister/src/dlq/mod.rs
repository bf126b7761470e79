//! The dead-letter queue, for operators: the letter format the persister writes
//! ([`letter`], with a code per [`reason`]), reading the dead-letter topic ([`read`]),
//! replaying letters to their source topic with each replay recorded in MySQL ([`replay`]),
//! and the `flashgate-persister dlq` commands ([`command`], printed by [`render`]).

pub mod command;
pub mod letter;
pub mod read;
pub mod reason;
pub mod render;
pub mod replay;
