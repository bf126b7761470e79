//! The bound on Redis calls in flight per gateway for purchases and claims: when Redis slows
//! down, requests would otherwise pile up waiting on it until they time out; past the bound
//! they get 503 `overloaded` at once. One atomic add and subtract per call: nothing measurable
//! on the hot path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counts the calls in flight against the bound.
#[derive(Debug)]
pub struct InFlight {
    max: usize,
    now: AtomicUsize,
    shed: AtomicU64,
}

impl InFlight {
    /// A bound of `max` calls at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            now: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
        }
    }

    /// A place for one call, held until the permit is dropped; `None` (and counted as shed)
    /// when `max` calls are in flight already.
    pub fn enter(&self) -> Option<InFlightPermit<'_>> {
        // Compare-and-swap rather than add-then-undo: an add past the bound would, for a moment,
        // shed a call that fits.
        let entered = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < self.max).then_some(now + 1)
            });
        if entered.is_err() {
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlightPermit(self))
    }

    /// Calls in flight now.
    pub fn current(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }

    /// Calls shed so far.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// One call's place; given back when dropped, however the call ends.
#[derive(Debug)]
pub struct InFlightPermit<'a>(&'a InFlight);

impl Drop for InFlightPermit<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_calls_are_shed_and_a_finished_call_frees_its_place() {
        let bound = InFlight::new(2);
        let first = bound.enter().expect("first");
        let second = bound.enter().expect("second");
        assert!(bound.enter().is_none());
        assert!(bound.enter().is_none());
        assert_eq!((bound.current(), bound.shed()), (2, 2));
        drop(first);
        let third = bound.enter().expect("a place is free again");
        drop((second, third));
        assert_eq!((bound.current(), bound.shed()), (0, 2));
    }

    #[test]
    fn many_threads_never_hold_more_places_than_the_bound() {
        let bound = InFlight::new(3);
        let (held, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(permit) = bound.enter() {
                            peak.fetch_max(
                                held.fetch_add(1, Ordering::SeqCst) + 1,
                                Ordering::SeqCst,
                            );
                            held.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(bound.current(), 0);
    }
}
