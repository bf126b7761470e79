//! Counters of the provider, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::book::Counts;

/// Every outcome of `POST /charges`, rendered even before it happens (so a rate is 0, not
/// absent).
pub const CHARGE_OUTCOMES: [&str; 8] = [
    "succeeded",
    "card_declined",
    "invalid_token",
    "replayed",
    "key_reused",
    "failed_random",
    "failed_flaky",
    "provider_full",
];

/// Every outcome of `POST /charges/{id}/refund`.
pub const REFUND_OUTCOMES: [&str; 6] = [
    "refunded",
    "replayed",
    "not_refundable",
    "no_such_charge",
    "key_reused",
    "partial_amount",
];

/// Every metric of the provider.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    charges: Mutex<BTreeMap<&'static str, u64>>,
    refunds: Mutex<BTreeMap<&'static str, u64>>,
    in_flight: AtomicI64,
}

/// Counts a request in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn count(counters: &Mutex<BTreeMap<&'static str, u64>>, outcome: &'static str) {
    *counters
        .lock()
        .expect("metrics lock")
        .entry(outcome)
        .or_default() += 1;
}

impl Metrics {
    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Counts one answered request.
    pub fn observe_request(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route, status))
            .or_default() += 1;
    }

    /// Counts one charge request's outcome (one of [`CHARGE_OUTCOMES`]).
    pub fn observe_charge(&self, outcome: &'static str) {
        count(&self.charges, outcome);
    }

    /// Counts one refund request's outcome (one of [`REFUND_OUTCOMES`]).
    pub fn observe_refund(&self, outcome: &'static str) {
        count(&self.refunds, outcome);
    }

    /// The Prometheus text exposition, with what the book holds now.
    pub fn render(&self, book: Counts) -> String {
        let mut out = String::new();
        let charges = self.charges.lock().expect("metrics lock").clone();
        labelled(
            &mut out,
            "flashgate_psp_charges_total",
            "charge requests, by outcome",
            &CHARGE_OUTCOMES,
            &charges,
        );
        let refunds = self.refunds.lock().expect("metrics lock").clone();
        labelled(
            &mut out,
            "flashgate_psp_refunds_total",
            "refund requests, by outcome",
            &REFUND_OUTCOMES,
            &refunds,
        );
        let name = "flashgate_psp_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} requests answered, by route and status\n# TYPE {name} counter"
        );
        for ((route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        for (name, help, value) in [
            (
                "flashgate_psp_in_flight_requests",
                "requests being answered",
                self.in_flight.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "flashgate_psp_charges_kept",
                "charges in the book (in memory; lost when the process stops)",
                book.charges as u64,
            ),
            (
                "flashgate_psp_charges_succeeded_kept",
                "succeeded charges in the book, refunded ones included",
                book.succeeded as u64,
            ),
            (
                "flashgate_psp_refunds_kept",
                "refunds in the book",
                book.refunds as u64,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// One counter labelled by `outcome`, every known outcome rendered.
fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    outcomes: &[&'static str],
    counts: &BTreeMap<&'static str, u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for outcome in outcomes {
        let n = counts.get(outcome).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_rendered_from_zero_and_in_flight_falls_when_a_request_ends() {
        let metrics = Metrics::default();
        metrics.observe_charge("succeeded");
        metrics.observe_refund("refunded");
        metrics.observe_request("charge_create", 201);
        let guard = metrics.in_flight();

        let during = metrics.render(Counts::default());
        drop(guard);
        let after = metrics.render(Counts::default());

        assert!(during.contains("flashgate_psp_charges_total{outcome=\"succeeded\"} 1\n"));
        assert!(during.contains("flashgate_psp_charges_total{outcome=\"card_declined\"} 0\n"));
        assert!(during.contains("flashgate_psp_refunds_total{outcome=\"refunded\"} 1\n"));
        assert!(
            during.contains(
                "flashgate_psp_requests_total{route=\"charge_create\",status=\"201\"} 1\n"
            )
        );
        assert!(during.contains("flashgate_psp_in_flight_requests 1\n"));
        assert!(after.contains("flashgate_psp_in_flight_requests 0\n"));
    }
}
