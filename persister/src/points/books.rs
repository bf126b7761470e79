//! Deciding point changes against the balances and the ledger as they stand: pure logic, no
//! I/O. `ledger.rs` reads what it needs under the row locks, lets [`Books`] decide, and writes
//! what was decided.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_events::{PointsRefunded, earn_txid};

use super::changes::{PointChange, PointsOutcome, Refused};

/// A user's balance row, as locked, and what this batch does to it.
pub(super) struct Account {
    pub(super) balance: i64,
    pub(super) version: u64,
    pub(super) moved: bool,
    pub(super) txids: Vec<String>,
}

/// A ledger row, stored or written by this batch.
pub(super) struct Known {
    pub(super) delta: i64,
    pub(super) refused: bool,
    pub(super) user_id: String,
}

/// The ledger reason of a take-back of all a cancelled order earned.
pub(super) const UNEARN: &str = "unearn";

/// The ledger reason of a take-back of less than the order earned: the user had spent some of
/// it, and a balance never goes below zero.
pub(super) const UNEARN_PARTIAL: &str = "unearn_partial";

/// A ledger row to insert.
pub(super) struct NewRow {
    pub(super) txid: String,
    pub(super) user_id: String,
    pub(super) delta: i64,
    pub(super) reason: &'static str,
    pub(super) reference: String,
}

/// The decisions of one batch, against the balances and ledger as they stand.
pub(super) struct Books {
    pub(super) accounts: BTreeMap<String, Account>,
    pub(super) known: HashMap<String, Known>,
    pub(super) rows: Vec<NewRow>,
    /// Refusals announced by this batch (a change replayed within it is announced once).
    pub(super) announced: HashSet<String>,
    pub(super) outcome: PointsOutcome,
}

/// What became of one change.
pub(super) enum Decided {
    /// Written, refused, or found in the ledger.
    Done,
    /// A refund whose use is not in the ledger yet.
    Waits,
}

impl Books {
    /// Books over the locked `accounts` and the ledger rows `known` of the batch's txids.
    pub(super) fn new(accounts: BTreeMap<String, Account>, known: HashMap<String, Known>) -> Self {
        Self {
            accounts,
            known,
            rows: Vec::new(),
            announced: HashSet::new(),
            outcome: PointsOutcome::default(),
        }
    }

    pub(super) fn decide(&mut self, change: &PointChange, trace_id: &str) -> Decided {
        let txid = change.txid();
        let user = change.user_id();
        if let Some(known) = self.known.get(&txid) {
            // Already in the ledger (a replay): nothing moves, a refusal is announced again.
            self.outcome.duplicates += 1;
            let refused = known.refused;
            self.settled(change, &txid);
            if refused {
                self.refuse(change, &txid, trace_id, true);
            }
            return Decided::Done;
        }
        let spendable = self.accounts.get(user).map(|a| a.balance);
        let (delta, reason, reference) = match change {
            PointChange::Earn {
                order_id, points, ..
            } => (points_delta(*points), "earn", order_id.as_str()),
            PointChange::Unearn { order_id, .. } => {
                // Its earning is in the ledger already: written with the payment, in this
                // batch (decided before) or an earlier one.
                let earned = self
                    .known
                    .get(&earn_txid(order_id))
                    .filter(|earn| earn.user_id == user)
                    .map_or(0, |earn| earn.delta.max(0));
                if earned == 0 {
                    return Decided::Done; // it earned nothing: nothing to take back
                }
                let taken = taken_back(earned, spendable);
                if taken < earned {
                    tracing::warn!(
                        order_id,
                        user_id = user,
                        earned,
                        taken,
                        "a cancelled order's points were partly spent: took back what the \
                         balance held"
                    );
                    (-taken, UNEARN_PARTIAL, order_id.as_str())
                } else {
                    (-taken, UNEARN, order_id.as_str())
                }
            }
            PointChange::Use(used) => {
                let amount = points_delta(used.amount);
                if can_pay(spendable, amount) {
                    (-amount, "use", used.order_id.as_str())
                } else {
                    (0, "rejected", used.order_id.as_str())
                }
            }
            PointChange::Refund(refund) => {
                let Some(used) = self.known.get(&refund.use_txid) else {
                    return Decided::Waits;
                };
                let amount = points_delta(refund.amount);
                if refund_gives_back(used.delta, &used.user_id, refund, spendable) {
                    (amount, "refund", refund.use_txid.as_str())
                } else {
                    (0, "rejected", refund.use_txid.as_str())
                }
            }
        };
        self.settled(change, &txid);
        if reason == "rejected" {
            self.refuse(change, &txid, trace_id, false);
        }
        if delta != 0
            && let Some(account) = self.accounts.get_mut(user)
        {
            account.balance += delta;
            account.moved = true;
            self.outcome.written += 1;
        }
        self.known.insert(
            txid.clone(),
            Known {
                delta,
                refused: reason == "rejected",
                user_id: user.to_owned(),
            },
        );
        self.rows.push(NewRow {
            txid,
            user_id: user.to_owned(),
            delta,
            reason,
            reference: reference.to_owned(),
        });
        Decided::Done
    }

    /// A Redis-made change is no longer pending in its user's cache.
    fn settled(&mut self, change: &PointChange, txid: &str) {
        if change.made_in_redis()
            && let Some(account) = self.accounts.get_mut(change.user_id())
        {
            account.txids.push(txid.to_owned());
        }
    }

    fn refuse(&mut self, change: &PointChange, txid: &str, trace_id: &str, replayed: bool) {
        if self.announced.insert(txid.to_owned()) {
            self.outcome.refused.push(Refused {
                txid: txid.to_owned(),
                user_id: change.user_id().to_owned(),
                amount: change.amount(),
                reason: change.refusal(),
                trace_id: trace_id.to_owned(),
                replayed,
            });
        }
    }
}

/// Whether a use of `amount` points can be paid from a `spendable` balance (`None`: the user
/// has no balance row).
pub fn can_pay(spendable: Option<i64>, amount: i64) -> bool {
    spendable.is_some_and(|balance| balance >= amount)
}

/// Whether `refund` gives back exactly what its use took: the use (ledger delta `use_delta`,
/// of `use_user`) took these points from this user, whose balance row exists (`spendable`).
pub fn refund_gives_back(
    use_delta: i64,
    use_user: &str,
    refund: &PointsRefunded,
    spendable: Option<i64>,
) -> bool {
    use_delta == -points_delta(refund.amount) && use_user == refund.user_id && spendable.is_some()
}

/// What taking back `earned` points leaves taken from a `spendable` balance (`None`: no
/// balance row): all of them, or what the balance holds — never below zero.
pub(super) fn taken_back(earned: i64, spendable: Option<i64>) -> i64 {
    earned.min(spendable.unwrap_or(0).max(0)).max(0)
}

/// Points as a ledger delta (saturating: no real amount comes near `i64::MAX`).
pub(super) fn points_delta(points: u64) -> i64 {
    i64::try_from(points).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use flashgate_events::PointsUsed;

    use super::*;

    fn books(users: &[(&str, i64)], known: &[(&str, i64, bool, &str)]) -> Books {
        let accounts = users
            .iter()
            .map(|(user, balance)| {
                let account = Account {
                    balance: *balance,
                    version: 1,
                    moved: false,
                    txids: Vec::new(),
                };
                ((*user).to_owned(), account)
            })
            .collect();
        let known = known
            .iter()
            .map(|(txid, delta, refused, user)| {
                let row = Known {
                    delta: *delta,
                    refused: *refused,
                    user_id: (*user).to_owned(),
                };
                ((*txid).to_owned(), row)
            })
            .collect();
        Books::new(accounts, known)
    }

    fn use_of(user: &str, txid: &str, amount: u64) -> PointChange {
        PointChange::Use(PointsUsed {
            txid: txid.to_owned(),
            user_id: user.to_owned(),
            amount,
            order_id: "1-o".to_owned(),
            at: Utc::now(),
        })
    }

    fn refund_of(user: &str, use_txid: &str, amount: u64) -> PointChange {
        PointChange::Refund(PointsRefunded {
            txid: flashgate_events::refund_txid(use_txid).expect("use txid"),
            use_txid: use_txid.to_owned(),
            user_id: user.to_owned(),
            amount,
            at: Utc::now(),
        })
    }

    fn rows(books: &Books) -> Vec<(&str, i64, &str)> {
        books
            .rows
            .iter()
            .map(|r| (r.txid.as_str(), r.delta, r.reason))
            .collect()
    }

    #[test]
    fn a_use_is_paid_only_from_a_balance_that_covers_it() {
        assert!(can_pay(Some(60), 60));
        assert!(!can_pay(Some(59), 60));
        assert!(!can_pay(None, 1), "no balance row, nothing to spend");
    }

    #[test]
    fn a_refund_gives_back_only_its_own_uses_points_to_their_owner() {
        let PointChange::Refund(refund) = refund_of("ana", "use-1", 60) else {
            unreachable!("a refund")
        };
        assert!(refund_gives_back(-60, "ana", &refund, Some(0)));
        assert!(
            !refund_gives_back(-50, "ana", &refund, Some(0)),
            "another amount"
        );
        assert!(
            !refund_gives_back(-60, "eve", &refund, Some(0)),
            "another user's use"
        );
        assert!(
            !refund_gives_back(0, "ana", &refund, Some(0)),
            "a refused use"
        );
        assert!(
            !refund_gives_back(-60, "ana", &refund, None),
            "no balance row"
        );
    }

    #[test]
    fn a_refund_waits_while_its_use_is_unknown_and_is_decided_after_it() {
        let mut books = books(&[("ana", 100)], &[]);
        let refund = refund_of("ana", "use-1", 60);
        assert!(matches!(books.decide(&refund, "t"), Decided::Waits));
        assert!(books.rows.is_empty(), "nothing decided early");
        assert!(matches!(
            books.decide(&use_of("ana", "use-1", 60), "t"),
            Decided::Done
        ));
        assert!(matches!(books.decide(&refund, "t"), Decided::Done));
        assert_eq!(
            rows(&books),
            [("use-1", -60, "use"), ("refund-1", 60, "refund")]
        );
        assert_eq!(books.accounts["ana"].balance, 100);
        assert_eq!(books.accounts["ana"].txids, ["use-1", "refund-1"]);
        assert!(books.outcome.refused.is_empty());
    }

    #[test]
    fn a_refund_of_a_refused_use_is_refused_and_a_replayed_refusal_is_announced_once_more() {
        let mut books = books(&[("ben", 10)], &[]);
        books.decide(&use_of("ben", "use-2", 50), "t");
        books.decide(&refund_of("ben", "use-2", 50), "t");
        assert_eq!(
            rows(&books),
            [("use-2", 0, "rejected"), ("refund-2", 0, "rejected")]
        );
        assert_eq!(books.outcome.refused.len(), 2);

        // The batch again, later: both found refused, each announced again, once.
        let mut replay = super::tests::books(
            &[("ben", 10)],
            &[("use-2", 0, true, "ben"), ("refund-2", 0, true, "ben")],
        );
        for _ in 0..2 {
            replay.decide(&use_of("ben", "use-2", 50), "t");
            replay.decide(&refund_of("ben", "use-2", 50), "t");
        }
        assert!(replay.rows.is_empty(), "nothing written again");
        let announced: Vec<(&str, bool)> = replay
            .outcome
            .refused
            .iter()
            .map(|r| (r.txid.as_str(), r.replayed))
            .collect();
        assert_eq!(announced, [("use-2", true), ("refund-2", true)]);
        assert_eq!(replay.outcome.duplicates, 4);
    }

    fn earn(user: &str, order_id: &str, points: u64) -> PointChange {
        PointChange::Earn {
            order_id: order_id.to_owned(),
            user_id: user.to_owned(),
            points,
        }
    }

    fn unearn(user: &str, order_id: &str) -> PointChange {
        PointChange::Unearn {
            order_id: order_id.to_owned(),
            user_id: user.to_owned(),
        }
    }

    #[test]
    fn a_take_back_never_leaves_a_balance_below_zero() {
        assert_eq!(taken_back(5, Some(100)), 5);
        assert_eq!(taken_back(5, Some(3)), 3);
        assert_eq!(taken_back(5, Some(0)), 0);
        assert_eq!(taken_back(5, None), 0, "no balance row, nothing to take");
    }

    #[test]
    fn a_cancelled_orders_earning_is_taken_back_once_and_only_what_the_balance_holds() {
        // Earned and taken back in one batch; a replay of the take-back moves nothing.
        let mut books = books(&[("ana", 100)], &[]);
        books.decide(&earn("ana", "1-a", 5), "t");
        books.decide(&unearn("ana", "1-a"), "t");
        books.decide(&unearn("ana", "1-a"), "t");
        assert_eq!(
            rows(&books),
            [("earn-1-a", 5, "earn"), ("unearn-1-a", -5, "unearn")]
        );
        assert_eq!(books.accounts["ana"].balance, 100);
        assert_eq!(books.outcome.duplicates, 1);
        assert!(books.accounts["ana"].txids.is_empty(), "not made in Redis");

        // Earned 5 before, 3 of them spent since: 2 taken back, and the row says so.
        let mut spent = super::tests::books(&[("ben", 2)], &[("earn-1-b", 5, false, "ben")]);
        spent.decide(&unearn("ben", "1-b"), "t");
        assert_eq!(rows(&spent), [("unearn-1-b", -2, UNEARN_PARTIAL)]);
        assert_eq!(spent.accounts["ben"].balance, 0);

        // All spent: recorded with nothing taken, so a later replay takes nothing either.
        let mut none = super::tests::books(&[("cy", 0)], &[("earn-1-c", 5, false, "cy")]);
        none.decide(&unearn("cy", "1-c"), "t");
        assert_eq!(rows(&none), [("unearn-1-c", 0, UNEARN_PARTIAL)]);
        assert!(!none.accounts["cy"].moved);
    }

    #[test]
    fn an_order_that_earned_nothing_has_nothing_taken_back() {
        let mut books = books(&[("ana", 50)], &[("earn-1-x", 5, false, "eve")]);
        books.decide(&unearn("ana", "1-a"), "t");
        books.decide(&unearn("ana", "1-x"), "t");
        assert!(books.rows.is_empty(), "no earning of hers: no row");
        assert_eq!(books.accounts["ana"].balance, 50);
        assert!(books.outcome.refused.is_empty());
    }

    #[test]
    fn a_refund_claimed_by_another_user_gives_nothing() {
        let mut books = books(&[("eve", 0)], &[("use-3", -60, false, "ana")]);
        books.decide(&refund_of("eve", "use-3", 60), "t");
        assert_eq!(rows(&books), [("refund-3", 0, "rejected")]);
        assert_eq!(books.accounts["eve"].balance, 0);
    }
}
