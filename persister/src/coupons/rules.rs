//! The decisions on coupon events, without I/O: a claimed coupon is issued when its policy
//! has one left in MySQL (`issued + 1 <= total_quantity`) and its user does not hold that
//! claim number yet; of a coupon's redemption changes, the newest (`seq`) wins, so a replayed
//! older change never overwrites a newer one.

use std::collections::{HashMap, HashSet};

use flashgate_events::{
    COUPON_REDEEMED, COUPON_REDEMPTION_CANCELLED, CouponIssued, CouponRedemption,
};

/// A coupon's redemption, or the undoing of one, as decoded from its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponChange {
    /// Redeemed (true), or its redemption cancelled.
    pub redeemed: bool,
    /// The change as the gateway published it; kept as JSON if it has to wait.
    pub data: CouponRedemption,
    /// The trace id it arrived with (kept with it if it has to wait for its coupon).
    pub trace_id: String,
}

impl CouponChange {
    /// Its envelope type, stored with it while it waits in `parked_events`.
    pub(super) fn event_type(&self) -> &'static str {
        if self.redeemed {
            COUPON_REDEEMED
        } else {
            COUPON_REDEMPTION_CANCELLED
        }
    }
}

/// What one batch of coupon events did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CouponsOutcome {
    /// Coupons inserted as `issued` (they now count in `coupon_policies.issued`).
    pub issued: Vec<String>,
    /// Coupons already stored (a replay or a re-send): nothing changed for them.
    pub duplicates: Vec<String>,
    /// Coupons stored as `rejected` (the policy was exhausted in MySQL, or the user already
    /// holds this claim number), and duplicates found already rejected.
    pub rejected: Vec<CouponIssued>,
    /// Coupons whose policy does not exist: never insertable.
    pub unknown_policy: Vec<String>,
    /// Changes (indexes into the batch's changes) whose coupon is unknown and whose policy
    /// does not exist: never applicable.
    pub hopeless_changes: Vec<usize>,
    /// Redemption changes applied.
    pub changed: u64,
    /// Redemption changes older than what is stored (replays): ignored.
    pub stale: u64,
    /// Changes parked now to wait for their coupon.
    pub parked: u64,
    /// Parked changes decided now that their coupon arrived.
    pub unparked: u64,
}

/// What is stored of one coupon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CouponRow {
    pub(super) status: String,
    pub(super) seq: u64,
}

/// A policy's counters, as locked: (`total_quantity`, `issued`).
pub(super) type Room = (u64, u64);

/// A user's claim of a policy: (policy, user, claim number).
pub(super) type ClaimSlot = (u64, String, u32);

/// A change to decide: from this batch, or parked by an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    pub(super) redeemed: bool,
    pub(super) data: CouponRedemption,
    /// Its row in `parked_events`, when it was parked by an earlier batch.
    pub(super) parked: Option<(String, String)>,
}

/// Whether a policy that has issued `issued` of its `total` coupons may issue one more to a
/// user who does not yet hold this claim number (`claim_taken` false).
pub fn can_issue(issued: u64, total: u64, claim_taken: bool) -> bool {
    issued < total && !claim_taken
}

/// Whether a redemption change numbered `seq` is newer than the coupon as stored (a rejected
/// coupon never changes).
pub fn is_newer(status: &str, stored_seq: u64, seq: u64) -> bool {
    status != "rejected" && seq > stored_seq
}

/// The new coupons of a batch, decided.
#[derive(Debug, Default)]
pub(super) struct Issue<'c> {
    /// The rows to insert: each new coupon and whether it is issued (or rejected).
    pub(super) rows: Vec<(&'c CouponIssued, bool)>,
    /// Coupons to add to each policy's `issued`.
    pub(super) issued_delta: HashMap<u64, u64>,
}

/// Decides `issued` (in delivery order) against the locked policies' `room`, what is
/// `stored` and the claims `taken`, all moved along as coupons are issued; each new coupon
/// is entered in `stored`.
pub(super) fn decide_issued<'c>(
    issued: &'c [CouponIssued],
    room: &mut HashMap<u64, Room>,
    stored: &mut HashMap<String, CouponRow>,
    taken: &mut HashSet<ClaimSlot>,
    outcome: &mut CouponsOutcome,
) -> Issue<'c> {
    let mut decided = Issue::default();
    for coupon in issued {
        if let Some(known) = stored.get(&coupon.coupon_id) {
            outcome.duplicates.push(coupon.coupon_id.clone());
            if known.status == "rejected" {
                outcome.rejected.push(coupon.clone());
            }
            continue;
        }
        let Some((total, count)) = room.get_mut(&coupon.policy_id) else {
            outcome.unknown_policy.push(coupon.coupon_id.clone());
            continue;
        };
        let claim = (coupon.policy_id, coupon.user_id.clone(), coupon.claim_no);
        let accepted = can_issue(*count, *total, taken.contains(&claim));
        if accepted {
            *count += 1;
            *decided.issued_delta.entry(coupon.policy_id).or_default() += 1;
            taken.insert(claim);
            outcome.issued.push(coupon.coupon_id.clone());
        } else {
            outcome.rejected.push(coupon.clone());
        }
        let status = if accepted { "issued" } else { "rejected" };
        stored.insert(
            coupon.coupon_id.clone(),
            CouponRow {
                status: status.to_owned(),
                seq: 1,
            },
        );
        decided.rows.push((coupon, accepted));
    }
    decided
}

/// Newest wins: of one coupon's `candidates` (sorted here by `seq`), those newer than `known`
/// are applied in `seq` order, which leaves the newest one's state; returns that one, and
/// moves `known.seq` to it. Counts the changes applied and the stale ones in `outcome`.
pub(super) fn newest<'c>(
    known: &mut CouponRow,
    candidates: &'c mut [Candidate],
    outcome: &mut CouponsOutcome,
) -> Option<&'c Candidate> {
    candidates.sort_by_key(|c| c.data.seq);
    let mut newest = None;
    for candidate in candidates.iter() {
        if is_newer(&known.status, known.seq, candidate.data.seq) {
            known.seq = candidate.data.seq;
            outcome.changed += 1;
            newest = Some(candidate);
        } else {
            outcome.stale += 1;
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn coupon(coupon_id: &str, user: &str, claim_no: u32) -> CouponIssued {
        CouponIssued {
            coupon_id: coupon_id.to_owned(),
            policy_id: 3,
            user_id: user.to_owned(),
            claim_no,
            issued_at: Utc::now(),
            expires_at: Utc::now(),
        }
    }

    fn change(seq: u64, redeemed: bool) -> Candidate {
        Candidate {
            redeemed,
            data: CouponRedemption {
                coupon_id: "3-c".to_owned(),
                policy_id: 3,
                user_id: "ana".to_owned(),
                order_id: "1-o".to_owned(),
                discount: if redeemed { 100 } else { 0 },
                seq,
                at: Utc::now(),
            },
            parked: None,
        }
    }

    fn stored(status: &str, seq: u64) -> CouponRow {
        CouponRow {
            status: status.to_owned(),
            seq,
        }
    }

    #[test]
    fn a_coupon_is_issued_while_the_policy_has_one_and_the_claim_is_free() {
        assert!(can_issue(9, 10, false));
        assert!(!can_issue(10, 10, false));
        assert!(!can_issue(0, 10, true));
    }

    #[test]
    fn only_a_later_change_of_a_live_coupon_is_newer() {
        assert!(is_newer("issued", 1, 2));
        assert!(!is_newer("redeemed", 2, 2));
        assert!(!is_newer("redeemed", 3, 2));
        assert!(!is_newer("rejected", 1, 2));
    }

    #[test]
    fn the_last_coupon_goes_to_the_first_claim_and_a_claim_number_is_held_once() {
        let issued = [
            coupon("3-a", "ana", 1),
            coupon("3-b", "ben", 1),
            coupon("3-c", "ana", 1),
        ];
        let mut room = HashMap::from([(3, (2, 1))]);
        let (mut known, mut taken) = (HashMap::new(), HashSet::new());
        let mut outcome = CouponsOutcome::default();
        let decided = decide_issued(&issued, &mut room, &mut known, &mut taken, &mut outcome);
        assert_eq!(outcome.issued, ["3-a"]);
        assert_eq!(outcome.rejected, [issued[1].clone(), issued[2].clone()]);
        assert_eq!(decided.issued_delta, HashMap::from([(3, 1)]));
        assert_eq!(decided.rows.len(), 3, "the refused are stored as rejected");
        assert_eq!(known["3-b"], stored("rejected", 1));
    }

    #[test]
    fn a_replayed_coupon_is_a_duplicate_and_its_refusal_is_announced_again() {
        let issued = [coupon("3-a", "ana", 1), coupon("3-r", "rob", 1)];
        let mut known = HashMap::from([
            ("3-a".to_owned(), stored("issued", 1)),
            ("3-r".to_owned(), stored("rejected", 1)),
        ]);
        let mut outcome = CouponsOutcome::default();
        let decided = decide_issued(
            &issued,
            &mut HashMap::from([(3, (10, 0))]),
            &mut known,
            &mut HashSet::new(),
            &mut outcome,
        );
        assert!(decided.rows.is_empty());
        assert_eq!(outcome.duplicates, ["3-a", "3-r"]);
        assert_eq!(outcome.rejected, [issued[1].clone()]);
    }

    #[test]
    fn changes_in_any_order_leave_the_newest_and_replays_are_stale() {
        let mut known = stored("issued", 2);
        let mut candidates = [change(4, false), change(2, true), change(3, true)];
        let mut outcome = CouponsOutcome::default();
        let newest = newest(&mut known, &mut candidates, &mut outcome);
        assert_eq!(newest.map(|c| (c.data.seq, c.redeemed)), Some((4, false)));
        assert_eq!((outcome.changed, outcome.stale), (2, 1));
        assert_eq!(known.seq, 4);

        let mut again = [change(3, true)];
        assert_eq!(super::newest(&mut known, &mut again, &mut outcome), None);
        assert_eq!(outcome.stale, 2);
    }
}
