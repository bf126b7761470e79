//! The hand-off of fresh payments from the intake to this instance's workers: the intake
//! leases the rows it has just written, in the same transaction (no claim of their own), and
//! passes them on through a bounded channel, so a new payment is worked as soon as it is
//! stored instead of after the next claim. Only as many as the channel has room for are
//! leased; the rest stay unleased, for the claim (which also still takes every retry, every
//! lease that ran out and every other instance's share).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::Claimed;

/// A payment leased by the intake for a worker.
#[derive(Debug)]
pub struct Handed {
    /// The lease owner it was leased to (the fence of the worker's writes).
    pub owner: String,
    /// The row as leased.
    pub claim: Claimed,
}

/// The intake's end.
pub struct Handoff {
    /// Bounded by the workers' concurrency: no more is leased than the workers can take
    /// up soon (a leased row waiting here is nobody else's until its lease runs out).
    sender: mpsc::Sender<Handed>,
    /// This instance's name in `lease_owner`.
    instance: String,
    /// Numbers the intake's leases, as claims are numbered, so a late write of an older
    /// lease never passes the fence of a newer one.
    leases: AtomicU64,
    /// `saga.lease_ms`.
    pub lease: Duration,
}

/// A hand-off for `instance` holding up to `capacity` payments, and the workers' end.
pub fn channel(
    capacity: usize,
    instance: &str,
    lease: Duration,
) -> (Handoff, mpsc::Receiver<Handed>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (
        Handoff {
            sender,
            instance: instance.to_owned(),
            leases: AtomicU64::new(0),
            lease,
        },
        receiver,
    )
}

impl Handoff {
    /// Room for up to `wanted` payments, reserved (the intake is the only sender, so it
    /// stays free until used or dropped), with the lease owner to write them under; `None`
    /// when the channel is full or the workers are gone.
    pub fn reserve(&self, wanted: usize) -> Option<(mpsc::PermitIterator<'_, Handed>, String)> {
        let room = wanted.min(self.sender.capacity());
        if room == 0 {
            return None;
        }
        let permits = self.sender.try_reserve_many(room).ok()?;
        let n = self.leases.fetch_add(1, Ordering::Relaxed) + 1;
        Some((permits, format!("{}#i{n}", self.instance)))
    }
}
