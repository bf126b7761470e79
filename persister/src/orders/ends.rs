//! The decisions on orders' ends, without I/O. Redis decides every end first (one script per
//! sale); MySQL stores it on a `confirmed` order, and one more transition after it: a `paid`
//! order cancelled (refunded at the provider first). No other order changes after a final
//! state. A cancelled or expired order gives its units back to `sold`; a paid one earns points
//! (an order never paid earns nothing), and a paid one cancelled gives them back.
//!
//! Redis emits a paid order's cancellation only after its payment, so when both reach one
//! decision (one batch, or both parked for an admission) in the wrong order, the payment is
//! decided first. A cancellation that reaches MySQL before its payment, across batches, finds
//! the order `confirmed` and ends it there (units back, nothing earned); the payment then
//! finds it final and changes nothing: the same end state, without the `paid` step in the
//! history.

use std::collections::{BTreeMap, HashMap};

use flashgate_config::PointsSettings;
use flashgate_events::{OrderEnd, OrderEnded};

use crate::points::PointChange;

/// The widest reason `orders.close_reason` and `order_history.reason` hold, in characters.
pub(super) const REASON_CHARS: usize = 200;

/// An order's end as delivered, with the trace id it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The end, as Redis decided it.
    pub event: OrderEnded,
    /// Its trace id, carried on to the lifecycle topic.
    pub trace_id: String,
}

impl End {
    /// The reason as stored: a manager's text longer than the column is cut rather than the
    /// end refused (an end MySQL never stores would hold its units forever).
    pub(super) fn stored_reason(&self) -> Option<String> {
        self.event
            .reason
            .as_ref()
            .map(|r| r.chars().take(REASON_CHARS).collect())
    }
}

/// An order's row as an end sees it, read under its row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ordered {
    /// Whose `sold` a give-back lowers (the row's, not the event's).
    pub(super) sale_id: u64,
    /// Who earns when it is paid.
    pub(super) user_id: String,
    /// Units it holds.
    pub(super) quantity: u32,
    /// What it earns on.
    pub(super) amount: u64,
    /// As stored; moved along as this batch decides.
    pub(super) status: String,
    /// Whether it was paid (`paid_at` set; kept when a paid order is cancelled), so a replayed
    /// cancellation still settles the points it took back.
    pub(super) paid: bool,
}

/// What becomes of one end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The order is confirmed: the end is stored now.
    Apply,
    /// The order is paid and this is its cancellation (refunded): stored now, its units and
    /// its earning given back.
    CancelPaid,
    /// The order already ended this way (a replay): nothing changes; announced again.
    Found,
    /// The order is final another way (rejected, or ended otherwise): nothing changes.
    Stale,
    /// The order is not stored (its admission is still on its way).
    Absent,
}

/// What `end` does to an order stored as `row` (`None`: not stored).
pub(super) fn verdict(row: Option<&Ordered>, end: OrderEnd) -> Verdict {
    match row {
        None => Verdict::Absent,
        Some(row) if row.status == "confirmed" => Verdict::Apply,
        Some(row) if row.status == "paid" && end == OrderEnd::Cancelled => Verdict::CancelPaid,
        Some(row) if row.status == end.status() => Verdict::Found,
        Some(_) => Verdict::Stale,
    }
}

/// What a list of ends comes to, decided in order.
#[derive(Debug, Default)]
pub(super) struct EndDecisions<'e> {
    /// Ends of confirmed orders to store now.
    pub(super) applied: Vec<&'e End>,
    /// Cancellations of paid orders to store now (after `applied`: an order paid and
    /// cancelled in one decision is paid first).
    pub(super) paid_cancelled: Vec<&'e End>,
    /// Ends found stored.
    pub(super) found: Vec<&'e End>,
    /// Ends of orders final another way.
    pub(super) stale: Vec<&'e End>,
    /// Positions (in the list decided) of the ends whose order is not stored.
    pub(super) absent: Vec<usize>,
    /// Units given back to each sale's `sold`.
    pub(super) sold_back: BTreeMap<u64, u64>,
    /// What the paid orders earn, and what the paid orders cancelled give back (stored now or
    /// found stored: a batch retried after its commit still settles the caches; the ledger's
    /// `earn-<order>` and `unearn-<order>` make each once), in the order decided.
    pub(super) earns: Vec<PointChange>,
}

/// Decides `ends` in delivery order against the locked `rows`, which move along: of two ends
/// of one order, the second finds the first. One exception: a cancellation that finds its
/// order `confirmed` while a payment of that order is behind it in the list was delivered
/// ahead of it (Redis cancels a paid order only after its payment): the payment is decided
/// first. The order is then paid and cancelled, as in Redis; a payment delivered after the
/// cancellation of an order already paid is decided where it is, and finds it final.
pub(super) fn decide<'e>(
    ends: &[&'e End],
    rows: &mut HashMap<String, Ordered>,
    earning: &PointsSettings,
) -> EndDecisions<'e> {
    let mut decisions = EndDecisions::default();
    let mut payments: HashMap<&str, Vec<usize>> = HashMap::new();
    for (position, end) in ends.iter().enumerate() {
        if end.event.end == OrderEnd::Paid {
            payments
                .entry(&end.event.order_id)
                .or_default()
                .push(position);
        }
    }
    let mut decided = vec![false; ends.len()];
    for position in 0..ends.len() {
        if decided[position] {
            continue; // a payment decided ahead of its cancellation
        }
        let event = &ends[position].event;
        let early = event.end == OrderEnd::Cancelled
            && rows
                .get(&event.order_id)
                .is_some_and(|row| row.status == "confirmed");
        let payment = payments
            .get(event.order_id.as_str())
            .and_then(|at| at.iter().copied().find(|&at| at > position && !decided[at]));
        if let Some(payment) = payment.filter(|_| early) {
            decided[payment] = true;
            decide_one(&mut decisions, ends, payment, rows, earning);
        }
        decided[position] = true;
        decide_one(&mut decisions, ends, position, rows, earning);
    }
    decisions
}

/// Decides the end at `position` of `ends`.
fn decide_one<'e>(
    decisions: &mut EndDecisions<'e>,
    ends: &[&'e End],
    position: usize,
    rows: &mut HashMap<String, Ordered>,
    earning: &PointsSettings,
) {
    let end = ends[position];
    let row = rows.get_mut(&end.event.order_id);
    match (verdict(row.as_deref(), end.event.end), row) {
        (Verdict::Absent, _) | (_, None) => decisions.absent.push(position),
        (Verdict::Stale, Some(_)) => decisions.stale.push(end),
        (verdict, Some(row)) => store(decisions, verdict, end, row, earning),
    }
}

/// Adds to `decisions` what `end` does to the stored order `row` (moved along), decided
/// `verdict`, and the points it earns or gives back.
fn store<'e>(
    decisions: &mut EndDecisions<'e>,
    verdict: Verdict,
    end: &'e End,
    row: &mut Ordered,
    earning: &PointsSettings,
) {
    let event = &end.event;
    match verdict {
        Verdict::Apply => {
            event.end.status().clone_into(&mut row.status);
            if event.end.gives_back() {
                *decisions.sold_back.entry(row.sale_id).or_default() += u64::from(row.quantity);
            }
            row.paid |= event.end == OrderEnd::Paid;
            decisions.applied.push(end);
        }
        Verdict::CancelPaid => {
            event.end.status().clone_into(&mut row.status);
            *decisions.sold_back.entry(row.sale_id).or_default() += u64::from(row.quantity);
            decisions.paid_cancelled.push(end);
        }
        Verdict::Found => decisions.found.push(end),
        Verdict::Stale | Verdict::Absent => return,
    }
    let points = earning.earned(row.amount);
    if event.end == OrderEnd::Paid && points > 0 {
        decisions.earns.push(PointChange::Earn {
            order_id: event.order_id.clone(),
            user_id: row.user_id.clone(),
            points,
        });
    } else if event.end == OrderEnd::Cancelled && row.paid {
        // What it earned is read from the ledger, not computed again: the earning settings may
        // have changed since it was paid.
        decisions.earns.push(PointChange::Unearn {
            order_id: event.order_id.clone(),
            user_id: row.user_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn end(order_id: &str, end: OrderEnd) -> End {
        End {
            event: OrderEnded {
                order_id: order_id.to_owned(),
                sale_id: 1,
                user_id: "ana".to_owned(),
                quantity: 2,
                end,
                reason: None,
                at: Utc::now(),
            },
            trace_id: "t".to_owned(),
        }
    }

    fn row(status: &str) -> Ordered {
        Ordered {
            sale_id: 1,
            user_id: "ana".to_owned(),
            quantity: 2,
            amount: 1_000,
            status: status.to_owned(),
            paid: status == "paid",
        }
    }

    fn earning(earn_basis_points: u32) -> PointsSettings {
        PointsSettings {
            earn_basis_points,
            ..PointsSettings::default()
        }
    }

    #[test]
    fn a_confirmed_order_ends_a_paid_one_can_still_be_cancelled_and_no_other_changes() {
        let cancel = OrderEnd::Cancelled;
        assert_eq!(verdict(Some(&row("confirmed")), cancel), Verdict::Apply);
        assert_eq!(verdict(Some(&row("paid")), cancel), Verdict::CancelPaid);
        assert_eq!(verdict(Some(&row("cancelled")), cancel), Verdict::Found);
        for status in ["rejected", "expired"] {
            assert_eq!(
                verdict(Some(&row(status)), cancel),
                Verdict::Stale,
                "{status}"
            );
        }
        for end in [OrderEnd::Paid, OrderEnd::Expired] {
            assert_eq!(verdict(Some(&row("cancelled")), end), Verdict::Stale);
        }
        assert_eq!(
            verdict(Some(&row("paid")), OrderEnd::Expired),
            Verdict::Stale
        );
        assert_eq!(verdict(None, cancel), Verdict::Absent);
    }

    #[test]
    fn a_give_back_lowers_sold_by_the_stored_quantity_and_only_paid_orders_earn() {
        let ends = [
            end("1-a", OrderEnd::Cancelled),
            end("1-b", OrderEnd::Expired),
            end("1-c", OrderEnd::Paid),
        ];
        let refs: Vec<&End> = ends.iter().collect();
        let mut rows: HashMap<String, Ordered> = ["1-a", "1-b", "1-c"]
            .map(|id| (id.to_owned(), row("confirmed")))
            .into();
        let decided = decide(&refs, &mut rows, &earning(100));
        assert_eq!(decided.applied.len(), 3);
        assert_eq!(
            decided.sold_back,
            BTreeMap::from([(1, 4)]),
            "2 + 2, not the paid"
        );
        let earned = PointChange::Earn {
            order_id: "1-c".to_owned(),
            user_id: "ana".to_owned(),
            points: 10,
        };
        assert_eq!(decided.earns, [earned]);
        assert_eq!(rows["1-c"].status, "paid");
    }

    #[test]
    fn a_second_end_of_an_order_finds_the_first_and_a_replayed_payment_earns_again() {
        let ends = [
            end("1-a", OrderEnd::Paid),
            end("1-a", OrderEnd::Paid),
            end("1-a", OrderEnd::Expired),
            end("1-z", OrderEnd::Expired),
        ];
        let refs: Vec<&End> = ends.iter().collect();
        let mut rows = HashMap::from([("1-a".to_owned(), row("confirmed"))]);
        let decided = decide(&refs, &mut rows, &earning(100));
        assert_eq!(decided.applied, [&ends[0]]);
        assert_eq!(decided.found, [&ends[1]]);
        assert_eq!(decided.stale, [&ends[2]]);
        assert_eq!(decided.absent, [3]);
        assert!(decided.sold_back.is_empty(), "a late expiry gives nothing");
        assert_eq!(decided.earns.len(), 2, "both settle; the ledger writes one");
    }

    #[test]
    fn a_paid_orders_cancellation_gives_its_units_and_earning_back_once() {
        let ends = [
            end("1-a", OrderEnd::Cancelled),
            end("1-a", OrderEnd::Cancelled),
            end("1-b", OrderEnd::Cancelled),
        ];
        let refs: Vec<&End> = ends.iter().collect();
        let mut rows = HashMap::from([
            ("1-a".to_owned(), row("paid")),
            ("1-b".to_owned(), row("expired")),
        ]);
        let decided = decide(&refs, &mut rows, &earning(100));
        assert!(decided.applied.is_empty());
        assert_eq!(decided.paid_cancelled, [&ends[0]]);
        assert_eq!(decided.found, [&ends[1]], "the replay finds it cancelled");
        assert_eq!(decided.stale, [&ends[2]]);
        assert_eq!(decided.sold_back, BTreeMap::from([(1, 2)]), "once");
        let unearn = PointChange::Unearn {
            order_id: "1-a".to_owned(),
            user_id: "ana".to_owned(),
        };
        assert_eq!(
            decided.earns,
            [unearn.clone(), unearn],
            "both settle; the ledger writes one"
        );
        assert_eq!(rows["1-a"].status, "cancelled");
    }

    #[test]
    fn a_cancellation_delivered_before_its_payment_is_decided_after_it() {
        let ends = [
            end("1-a", OrderEnd::Cancelled),
            end("1-b", OrderEnd::Expired),
            end("1-a", OrderEnd::Paid),
            end("1-a", OrderEnd::Paid),
        ];
        let refs: Vec<&End> = ends.iter().collect();
        let mut rows = HashMap::from([("1-a".to_owned(), row("confirmed"))]);
        let decided = decide(&refs, &mut rows, &earning(100));
        assert_eq!(decided.applied, [&ends[2]], "paid first");
        assert_eq!(decided.paid_cancelled, [&ends[0]], "then cancelled");
        assert_eq!(
            decided.stale,
            [&ends[3]],
            "a replayed payment finds it cancelled"
        );
        assert_eq!(decided.absent, [1], "positions stay those of the list");
        assert_eq!(decided.sold_back, BTreeMap::from([(1, 2)]));
        let changes: Vec<String> = decided.earns.iter().map(PointChange::txid).collect();
        assert_eq!(changes, ["earn-1-a", "unearn-1-a"]);
    }

    #[test]
    fn a_payment_delivered_again_after_the_cancellation_of_a_paid_order_changes_nothing() {
        let ends = [
            end("1-a", OrderEnd::Cancelled),
            end("1-a", OrderEnd::Paid),
            end("1-c", OrderEnd::Cancelled),
        ];
        let refs: Vec<&End> = ends.iter().collect();
        let mut rows = HashMap::from([
            ("1-a".to_owned(), row("paid")),
            ("1-c".to_owned(), row("confirmed")),
        ]);
        let decided = decide(&refs, &mut rows, &earning(100));
        assert_eq!(decided.paid_cancelled, [&ends[0]]);
        assert_eq!(
            decided.stale,
            [&ends[1]],
            "decided where it is: the order is final"
        );
        assert_eq!(
            decided.applied,
            [&ends[2]],
            "no payment behind it: cancelled"
        );
        let changes: Vec<String> = decided.earns.iter().map(PointChange::txid).collect();
        assert_eq!(changes, ["unearn-1-a"]);
    }

    #[test]
    fn a_replayed_cancellation_takes_points_back_only_from_an_order_that_was_paid() {
        let ends = [
            end("1-a", OrderEnd::Cancelled),
            end("1-b", OrderEnd::Cancelled),
        ];
        let refs: Vec<&End> = ends.iter().collect();
        let was_paid = Ordered {
            paid: true,
            ..row("cancelled")
        };
        let mut rows = HashMap::from([
            ("1-a".to_owned(), was_paid),
            ("1-b".to_owned(), row("cancelled")),
        ]);
        let decided = decide(&refs, &mut rows, &earning(100));
        assert_eq!(decided.found.len(), 2);
        let changes: Vec<String> = decided.earns.iter().map(PointChange::txid).collect();
        assert_eq!(changes, ["unearn-1-a"]);
    }

    #[test]
    fn a_reason_longer_than_its_column_is_cut_on_a_character_boundary() {
        let mut long = end("1-a", OrderEnd::Cancelled);
        long.event.reason = Some("é".repeat(REASON_CHARS + 5));
        let stored = long.stored_reason().expect("a reason");
        assert_eq!(stored.chars().count(), REASON_CHARS);
        assert_eq!(end("1-a", OrderEnd::Paid).stored_reason(), None);
    }
}
