//! The decisions on orders' ends, without I/O. Redis decides every end first (one script per
//! sale, so an order ends once); MySQL stores it only on a `confirmed` order: no order changes
//! after a final state. A cancelled or expired order gives its units back to `sold`; a paid one
//! earns points (an order never paid earns nothing).

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
}

/// What becomes of one end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The order is confirmed: the end is stored now.
    Apply,
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
        Some(row) if row.status == end.status() => Verdict::Found,
        Some(_) => Verdict::Stale,
    }
}

/// What a list of ends comes to, decided in order.
#[derive(Debug, Default)]
pub(super) struct EndDecisions<'e> {
    /// Ends to store now, each with the sale of its order.
    pub(super) applied: Vec<&'e End>,
    /// Ends found stored.
    pub(super) found: Vec<&'e End>,
    /// Ends of orders final another way.
    pub(super) stale: Vec<&'e End>,
    /// Positions (in the list decided) of the ends whose order is not stored.
    pub(super) absent: Vec<usize>,
    /// Units given back to each sale's `sold`.
    pub(super) sold_back: BTreeMap<u64, u64>,
    /// What the paid orders earn (stored now or found paid: a batch retried after its commit
    /// still settles the caches; the ledger's `earn-<order>` makes it once).
    pub(super) earns: Vec<PointChange>,
}

/// Decides `ends` (in delivery order) against the locked `rows`, which move along: of two ends
/// of one order, the second finds the first.
pub(super) fn decide<'e>(
    ends: &[&'e End],
    rows: &mut HashMap<String, Ordered>,
    earning: &PointsSettings,
) -> EndDecisions<'e> {
    let mut decisions = EndDecisions::default();
    for (position, &end) in ends.iter().enumerate() {
        let event = &end.event;
        let row = rows.get_mut(&event.order_id);
        match verdict(row.as_deref(), event.end) {
            Verdict::Absent => decisions.absent.push(position),
            Verdict::Stale => decisions.stale.push(end),
            verdict @ (Verdict::Apply | Verdict::Found) => {
                let Some(row) = row else { continue };
                if verdict == Verdict::Apply {
                    event.end.status().clone_into(&mut row.status);
                    if event.end.gives_back() {
                        *decisions.sold_back.entry(row.sale_id).or_default() +=
                            u64::from(row.quantity);
                    }
                    decisions.applied.push(end);
                } else {
                    decisions.found.push(end);
                }
                let points = earning.earned(row.amount);
                if event.end == OrderEnd::Paid && points > 0 {
                    decisions.earns.push(PointChange::Earn {
                        order_id: event.order_id.clone(),
                        user_id: row.user_id.clone(),
                        points,
                    });
                }
            }
        }
    }
    decisions
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
        }
    }

    fn earning(earn_basis_points: u32) -> PointsSettings {
        PointsSettings {
            earn_basis_points,
            ..PointsSettings::default()
        }
    }

    #[test]
    fn only_a_confirmed_order_ends_and_a_final_one_never_changes() {
        let cancel = OrderEnd::Cancelled;
        assert_eq!(verdict(Some(&row("confirmed")), cancel), Verdict::Apply);
        assert_eq!(verdict(Some(&row("cancelled")), cancel), Verdict::Found);
        for status in ["rejected", "paid", "expired"] {
            assert_eq!(
                verdict(Some(&row(status)), cancel),
                Verdict::Stale,
                "{status}"
            );
        }
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
            end("1-a", OrderEnd::Cancelled),
            end("1-z", OrderEnd::Expired),
        ];
        let refs: Vec<&End> = ends.iter().collect();
        let mut rows = HashMap::from([("1-a".to_owned(), row("confirmed"))]);
        let decided = decide(&refs, &mut rows, &earning(100));
        assert_eq!(decided.applied, [&ends[0]]);
        assert_eq!(decided.found, [&ends[1]]);
        assert_eq!(decided.stale, [&ends[2]]);
        assert_eq!(decided.absent, [3]);
        assert!(
            decided.sold_back.is_empty(),
            "a cancel after payment gives nothing"
        );
        assert_eq!(decided.earns.len(), 2, "both settle; the ledger writes one");
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
