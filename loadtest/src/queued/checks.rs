//! What a queued-rush run saw (each joiner's ticket, the published draw, the probes) and the
//! invariants judged on it: the draw checks out by `flashgate-batch verify-draw`'s procedure
//! (`flashgate_events::draw::verify`) against the commitment read before anyone joined, every
//! position is the ticket's place in it, admission follows the positions, purchases need their
//! own pass, nothing is sold past the stock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use chrono::{DateTime, Utc};
use flashgate_events::draw;
use serde::Serialize;

use super::{PublishedDraw, Room};
use crate::invariants::Check;

/// What one joiner saw.
#[derive(Debug, Clone, Default)]
pub struct Joiner {
    /// Its ticket, once joined.
    pub ticket: Option<String>,
    /// When its join was answered (this machine's clock).
    pub joined_at: Option<DateTime<Utc>>,
    /// The last position it was told.
    pub position: Option<i64>,
    /// The last status: `admitted`, `dropped`, `expired`, `still waiting`, `not joined`.
    pub status: String,
    /// When it was admitted, by the gateway's clock (its pass expiry - the pass TTL).
    pub admitted_at_ms: Option<i64>,
    /// Polls sent.
    pub polls: u64,
    /// Its purchase's answer, when admitted (`202`, `409 sold_out`, ...).
    pub purchase: Option<String>,
}

/// The waiting room's side of a queued-rush run (in the JSON report as `queue`).
#[derive(Debug, Clone, Serialize)]
pub struct QueueRun {
    /// The queued sale.
    pub sale_id: u64,
    /// Joiners of the run.
    pub joiners: u64,
    /// Joiners who got a ticket.
    pub joined: u64,
    /// Tickets that took part in the draw (joined before the start).
    pub in_draw: u64,
    /// Joiners admitted (held a pass).
    pub admitted: u64,
    /// Purchases answered 202.
    pub bought: u64,
    /// Purchases with a pass answered otherwise, by label.
    pub purchases_refused: BTreeMap<String, u64>,
    /// Tickets dropped (their owner stopped polling) or expired (pass unused).
    pub dropped_or_expired: u64,
    /// Joiners still waiting (or never joined) when the run stopped waiting.
    pub unserved: u64,
    /// Polls of tickets sent.
    pub polls: u64,
    /// Joins and polls answered other than 200/201, by label.
    pub odd_answers: BTreeMap<String, u64>,
    /// The probes and their answers (each must be 403 queue_pass_required, or 409 sold_out
    /// once the stock is gone).
    pub probes: Vec<(String, String)>,
    /// The commitment `GET .../queue` showed before anyone joined.
    pub commitment_before: String,
    /// When the draw happened (the gateway's clock), if it was published.
    pub drawn_at: Option<DateTime<Utc>>,
    /// The verdict of the draw by verify-draw's procedure: `ok` or why not.
    pub draw_verdict: String,
    /// Tickets whose position is not their place in the published draw.
    pub positions_wrong: u64,
    /// Admitted tickets admitted before one with a better position.
    pub out_of_order: u64,
    /// From the draw to the first admission, in ms.
    pub draw_to_first_admission_ms: Option<i64>,
    /// From the draw to the last admission, in ms.
    pub draw_to_last_admission_ms: Option<i64>,
    /// Admissions per second between the first and the last (the room's rate was set).
    pub admitted_per_second: Option<f64>,
    /// The rate the room was given.
    pub admit_per_second_set: u32,
    /// From the first join to the last joiner served, in seconds.
    pub seconds: f64,
}

impl QueueRun {
    /// Judges what the joiners saw against the published draw.
    pub fn new(
        room: &Room,
        commitment_before: String,
        published: Option<PublishedDraw>,
        joiners: Vec<Joiner>,
        odd_answers: BTreeMap<String, u64>,
        probes: Vec<(String, String)>,
        seconds: f64,
    ) -> Self {
        let count = |f: &dyn Fn(&Joiner) -> bool| joiners.iter().filter(|j| f(j)).count() as u64;
        let mut purchases_refused = BTreeMap::new();
        for label in joiners.iter().filter_map(|j| j.purchase.as_deref()) {
            if label != "202" {
                *purchases_refused.entry(label.to_owned()).or_default() += 1;
            }
        }
        let (draw_verdict, positions_wrong) = match &published {
            None => ("no draw published".to_owned(), 0),
            Some(draw) => judge_draw(draw, &commitment_before, &joiners),
        };
        let drawn_at = published.as_ref().map(|d| d.drawn_at);
        let mut admitted: Vec<(i64, i64)> = joiners
            .iter()
            .filter_map(|j| Some((j.position?, j.admitted_at_ms?)))
            .collect();
        admitted.sort_unstable();
        let mut latest = i64::MIN;
        let mut out_of_order = 0;
        for &(_, at) in &admitted {
            if at < latest {
                out_of_order += 1;
            }
            latest = latest.max(at);
        }
        let first = admitted.iter().map(|a| a.1).min();
        let last = admitted.iter().map(|a| a.1).max();
        let since_draw = |at: Option<i64>| Some(at? - drawn_at?.timestamp_millis());
        let admitted_per_second = match (first, last) {
            (Some(first), Some(last)) if last > first => {
                Some((admitted.len() - 1) as f64 * 1000.0 / (last - first) as f64)
            }
            _ => None,
        };
        Self {
            sale_id: room.sale_id,
            joiners: joiners.len() as u64,
            joined: count(&|j| j.ticket.is_some()),
            in_draw: published.as_ref().map_or(0, |d| d.tickets.len() as u64),
            admitted: count(&|j| j.admitted_at_ms.is_some()),
            bought: count(&|j| j.purchase.as_deref() == Some("202")),
            purchases_refused,
            dropped_or_expired: count(&|j| matches!(j.status.as_str(), "dropped" | "expired")),
            unserved: count(&|j| matches!(j.status.as_str(), "still waiting" | "not joined")),
            polls: joiners.iter().map(|j| j.polls).sum(),
            odd_answers,
            probes,
            commitment_before,
            drawn_at,
            draw_verdict,
            positions_wrong,
            out_of_order,
            draw_to_first_admission_ms: since_draw(first),
            draw_to_last_admission_ms: since_draw(last),
            admitted_per_second,
            admit_per_second_set: room.admit_per_second,
            seconds,
        }
    }

    /// The report's markdown section.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let ms = |v: Option<i64>| v.map_or("—".to_owned(), |v| format!("{v} ms"));
        let _ = writeln!(out, "### waiting room (sale {})\n", self.sale_id);
        let _ = writeln!(
            out,
            "- joiners {}, joined {}, in the draw {}, admitted {}, bought {}, dropped or expired \
             {}, unserved {}; polls {}",
            self.joiners,
            self.joined,
            self.in_draw,
            self.admitted,
            self.bought,
            self.dropped_or_expired,
            self.unserved,
            self.polls
        );
        let _ = writeln!(
            out,
            "- draw → first admission {}, draw → last admission {}; admitted {}/s (set {}/s)",
            ms(self.draw_to_first_admission_ms),
            ms(self.draw_to_last_admission_ms),
            self.admitted_per_second
                .map_or("—".to_owned(), |r| format!("{r:.0}")),
            self.admit_per_second_set
        );
        let _ = writeln!(
            out,
            "- purchases with a pass refused: {:?}; other join/poll answers: {:?}",
            self.purchases_refused, self.odd_answers
        );
        out
    }
}

/// verify-draw's verdict on the published draw against the commitment read before anyone
/// joined; and how many joiners' positions are not their ticket's place in it.
fn judge_draw(draw: &PublishedDraw, before: &str, joiners: &[Joiner]) -> (String, u64) {
    let verdict = if !draw.commitment.eq_ignore_ascii_case(before) {
        format!(
            "the published commitment {} is not the one shown before the joins ({before})",
            draw.commitment
        )
    } else {
        match draw::verify(&draw.seed, before, &draw.tickets) {
            Ok(()) => "ok".to_owned(),
            Err(mismatch) => mismatch.to_string(),
        }
    };
    let places: HashMap<&str, i64> = draw
        .tickets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as i64 + 1))
        .collect();
    let drawn = draw.tickets.len() as i64;
    let wrong = joiners
        .iter()
        .filter(|j| match (&j.ticket, j.position) {
            // A ticket of the draw has its place; a later one comes after every drawn ticket.
            (Some(ticket), Some(position)) => match places.get(ticket.as_str()) {
                Some(&place) => place != position,
                None => position <= drawn,
            },
            // A joiner in the draw who was never told its position.
            (Some(ticket), None) => places.contains_key(ticket.as_str()),
            (None, _) => false,
        })
        .count() as u64;
    (verdict, wrong)
}

/// The invariants of a queued-rush run on a sale of `stock` units.
pub fn checks(run: &QueueRun, stock: u64) -> Vec<Check> {
    // A probe without its own pass must be refused. Once the stock is gone the gateway's
    // sold-out memory answers 409 `sold_out` before any pass is looked at: a refusal too,
    // and true, so it is accepted; anything else (a 202 above all) breaks the rule.
    let probes_refused = run
        .probes
        .iter()
        .all(|(_, label)| label == "403 queue_pass_required" || label == "409 sold_out");
    vec![
        Check {
            name: "queued: the published draw checks out (verify-draw's procedure)",
            held: run.draw_verdict == "ok",
            evidence: format!(
                "{} tickets drawn at {:?}; commitment before the joins {}: {}",
                run.in_draw, run.drawn_at, run.commitment_before, run.draw_verdict
            ),
        },
        Check {
            name: "queued: every position is the ticket's place in the published draw",
            held: run.positions_wrong == 0 && run.draw_verdict == "ok",
            evidence: format!(
                "{} of {} joined tickets placed otherwise",
                run.positions_wrong, run.joined
            ),
        },
        Check {
            name: "queued: tickets are admitted in position order",
            held: run.out_of_order == 0,
            evidence: format!(
                "{} of {} admitted before a better position",
                run.out_of_order, run.admitted
            ),
        },
        Check {
            name: "queued: a purchase needs its own pass (none, or another's: 403; 409 once sold out)",
            held: probes_refused && !run.probes.is_empty(),
            evidence: format!("{:?}", run.probes),
        },
        Check {
            name: "queued: every purchase admitted held a valid pass, none past the stock",
            held: run.bought <= run.admitted && run.bought <= stock,
            evidence: format!(
                "202 answers {} (all sent with the buyer's pass), admitted {}, stock {stock}",
                run.bought, run.admitted
            ),
        },
        Check {
            name: "queued: every joiner was served (admitted; none dropped, expired or waiting)",
            held: run.joined == run.joiners
                && run.admitted == run.joined
                && run.dropped_or_expired == 0
                && run.unserved == 0,
            evidence: format!(
                "joiners {}, joined {}, admitted {}, dropped or expired {}, unserved {}",
                run.joiners, run.joined, run.admitted, run.dropped_or_expired, run.unserved
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner(ticket: &str, position: i64, admitted_at_ms: i64) -> Joiner {
        Joiner {
            ticket: Some(ticket.into()),
            position: Some(position),
            status: "admitted".into(),
            admitted_at_ms: Some(admitted_at_ms),
            purchase: Some("202".into()),
            ..Joiner::default()
        }
    }

    #[test]
    fn a_true_draw_checks_out_and_a_swapped_position_or_late_admission_is_caught() {
        let seed = [7_u8; draw::SEED_BYTES];
        let tickets = draw::order(&seed, &["a", "b", "c"]);
        let published = PublishedDraw {
            seed: seed.iter().map(|b| format!("{b:02x}")).collect(),
            commitment: draw::commitment(&seed),
            drawn_at: DateTime::from_timestamp_millis(1_000).unwrap(),
            tickets: tickets.clone(),
        };
        let room = Room {
            sale_id: 1,
            starts_at: Utc::now(),
            pass_ttl_ms: 120_000,
            admission_timeout: std::time::Duration::from_secs(1),
            connections: 1,
            admit_per_second: 4,
            manager: http::HeaderValue::from_static("Bearer x"),
        };
        let good: Vec<_> = (0..3)
            .map(|i| joiner(&tickets[i], i as i64 + 1, 1_250 + 250 * i as i64))
            .collect();
        let probes = vec![("none".into(), "403 queue_pass_required".into())];
        let published_again = || PublishedDraw {
            tickets: tickets.clone(),
            seed: published.seed.clone(),
            commitment: published.commitment.clone(),
            drawn_at: published.drawn_at,
        };
        let commitment = published.commitment.clone();
        let run = QueueRun::new(
            &room,
            commitment.clone(),
            Some(published_again()),
            good.clone(),
            BTreeMap::new(),
            probes.clone(),
            1.0,
        );
        assert!(
            checks(&run, 3).iter().all(|c| c.held),
            "{:?}",
            checks(&run, 3)
        );
        assert_eq!(run.draw_to_last_admission_ms, Some(750));

        // A probe sent after the stock ran out is refused as sold out: still a refusal.
        let sold_out_probes = vec![
            ("none".into(), "403 queue_pass_required".into()),
            ("another's".into(), "409 sold_out".into()),
        ];
        let run = QueueRun::new(
            &room,
            commitment.clone(),
            Some(published_again()),
            good.clone(),
            BTreeMap::new(),
            sold_out_probes,
            1.0,
        );
        assert!(
            checks(&run, 3).iter().all(|c| c.held),
            "{:?}",
            checks(&run, 3)
        );

        let mut swapped = good.clone();
        swapped[0].position = Some(2);
        swapped[1].position = Some(1);
        let run = QueueRun::new(
            &room,
            commitment.clone(),
            Some(published_again()),
            swapped,
            BTreeMap::new(),
            probes.clone(),
            1.0,
        );
        assert_eq!(run.positions_wrong, 2);
        assert_eq!(run.out_of_order, 1);

        let run = QueueRun::new(
            &room,
            "00".repeat(32),
            Some(published_again()),
            good,
            BTreeMap::new(),
            vec![("none".into(), "202".into())],
            1.0,
        );
        let broken: Vec<_> = checks(&run, 3).into_iter().filter(|c| !c.held).collect();
        assert_eq!(broken.len(), 3, "{broken:?}");
    }
}
