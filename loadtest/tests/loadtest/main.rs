//! Small, fast runs of every scenario against a gateway and a persister started in-process on
//! the local stack: they check the harness and its invariant checks, not speed.

mod helpers;
mod invariants;
mod lifecycle;
mod payments;
mod queued;
mod scenarios;
