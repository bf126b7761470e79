//! The promise of payments through the provider: every payment the gateway took (202) ends as
//! its token says — `paid` for tok_ok — and none is left open once the run waited for them.
//! How fast is reported, not judged (timing belongs to the benchmark's targets).

use super::Check;
use crate::evidence::PaymentEvidence;

/// The check of the orders paid through the provider.
pub(super) fn checks(payments: &PaymentEvidence) -> Vec<Check> {
    let settled = match &payments.settled {
        Some(settled) if settled.all_final => {
            format!("all final {:.1} s after the traffic", settled.seconds)
        }
        Some(settled) => format!(
            "NOT all final {:.1} s after the traffic: still open {}",
            settled.seconds, settled.left
        ),
        None => "not waited for".to_owned(),
    };
    let ended: Vec<String> = payments
        .ended
        .iter()
        .map(|(status, n)| format!("{status} {n}"))
        .collect();
    let t = &payments.time_to_paid;
    let ended_as_expected = Check::new(
        "every payment through the provider ends as its token says",
        payments.not_as_expected.count == 0
            && payments.refused == 0
            && payments.settled.as_ref().is_some_and(|s| s.all_final),
        format!(
            "{} taken (202) with {}, {} refused; in MySQL: {} → {:.2} % paid (expected {}); \
             not {}: {}; {settled}; 202 → paid (MySQL paid_at - admitted_at, Redis's clock) \
             p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            payments.requested,
            payments.token,
            payments.refused,
            if ended.is_empty() {
                "-".to_owned()
            } else {
                ended.join(", ")
            },
            payments.paid_percent(),
            payments.expected,
            payments.expected,
            payments.not_as_expected,
            t.p50_ms,
            t.p99_ms,
            t.max_ms
        ),
    );
    vec![ended_as_expected]
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::tests::{healthy_sale, names_broken, sale_only};
    use crate::evidence::payments::Stored;
    use crate::evidence::{PaymentEvidence, Sample, Settled};

    fn paid(ms: f64) -> Stored {
        Stored {
            status: "paid".to_owned(),
            to_paid_ms: Some(ms),
        }
    }

    fn evidence(statuses: &[(&str, Stored)], settled: bool) -> PaymentEvidence {
        let requested: Vec<String> = statuses.iter().map(|(id, _)| (*id).to_owned()).collect();
        let stored: HashMap<String, Stored> = statuses
            .iter()
            .map(|(id, s)| ((*id).to_owned(), s.clone()))
            .collect();
        let mut payments = PaymentEvidence::judge("tok_ok", &requested, &stored);
        payments.settled = Some(Settled {
            all_final: settled,
            seconds: 1.5,
            left: Sample::default(),
        });
        payments
    }

    #[test]
    fn payments_that_all_ended_paid_break_nothing_and_show_their_times() {
        let mut sale = healthy_sale();
        sale.payments = Some(evidence(&[("1-a", paid(40.0)), ("1-b", paid(90.0))], true));
        let checks = super::super::check(&sale_only(sale));
        let check = checks
            .iter()
            .find(|c| c.name.contains("through the provider"))
            .expect("the payments check");
        assert!(check.held, "{check:?}");
        assert!(
            check.evidence.contains("paid 2 → 100.00 % paid")
                && check.evidence.contains("p50 40 ms, p99 90 ms, max 90 ms"),
            "{}",
            check.evidence
        );
    }

    #[test]
    fn a_payment_that_expired_one_refused_and_a_wait_that_timed_out_are_each_caught() {
        let expired = Stored {
            status: "expired".to_owned(),
            to_paid_ms: None,
        };
        let mut sale = healthy_sale();
        sale.payments = Some(evidence(&[("1-a", paid(40.0)), ("1-x", expired)], true));
        assert_eq!(
            names_broken(&sale_only(sale)),
            ["every payment through the provider ends as its token says"]
        );

        let mut refused = healthy_sale();
        let mut payments = evidence(&[("1-a", paid(40.0))], true);
        payments.refused = 1;
        refused.payments = Some(payments);
        assert_eq!(names_broken(&sale_only(refused)).len(), 1);

        let mut late = healthy_sale();
        late.payments = Some(evidence(&[("1-a", paid(40.0))], false));
        assert_eq!(names_broken(&sale_only(late)).len(), 1);
    }
}
