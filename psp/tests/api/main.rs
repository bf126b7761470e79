//! Integration tests of the virtual payment provider: the real `flashgate-psp` binary over
//! HTTP on a free loopback port (and the library's `serve`, stopped and started again).

mod charges;
mod cli;
mod helpers;
mod lookups;
mod ops;
mod outage;
mod refunds;
mod tokens;
