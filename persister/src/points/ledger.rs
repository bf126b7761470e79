//! Points in MySQL: ledger rows (unique `txid`) and the balance row they move, written in the
//! batch's transaction.
//!
//! The balance rows are locked first (`FOR UPDATE`), so every change of a user is decided
//! against the balance as it is, and the row's `version` goes up by one per commit that
//! moved it. A use the balance cannot pay for, and a refund of a use that was refused, are
//! recorded with delta 0 and reason `rejected` and announced as `points.rejected` — again on
//! every replay, as refused orders and coupons are. A refund whose use is not in the ledger
//! yet (a use and its refund can reach Kafka in either order) is neither applied nor refused:
//! it waits in `parked_events` and is decided, in delivery order after its use, by the
//! transaction that writes the use.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_events::{POINTS_REFUNDED, PointsRefunded, PointsUsed, earn_txid};
use sqlx::{MySqlConnection, QueryBuilder, Row};

use super::Settle;
use crate::parked::{self, Parked};

/// Why a use is refused.
const USE_REFUSED: &str = "the balance in the system of record is too low";

/// Why a refund is refused.
const REFUND_REFUSED: &str = "its use was refused by the system of record";

/// One point change to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Points a confirmed order earns.
    Earn {
        /// The order.
        order_id: String,
        /// The buyer.
        user_id: String,
        /// Points (at least 1).
        points: u64,
    },
    /// Points spent in Redis.
    Use(PointsUsed),
    /// A use given back in Redis.
    Refund(PointsRefunded),
}

impl Change {
    /// The ledger's unique id of this change.
    pub fn txid(&self) -> String {
        match self {
            Self::Earn { order_id, .. } => earn_txid(order_id),
            Self::Use(used) => used.txid.clone(),
            Self::Refund(refund) => refund.txid.clone(),
        }
    }

    fn user_id(&self) -> &str {
        match self {
            Self::Earn { user_id, .. } => user_id,
            Self::Use(used) => &used.user_id,
            Self::Refund(refund) => &refund.user_id,
        }
    }

    fn amount(&self) -> u64 {
        match self {
            Self::Earn { points, .. } => *points,
            Self::Use(used) => used.amount,
            Self::Refund(refund) => refund.amount,
        }
    }

    fn refusal(&self) -> &'static str {
        match self {
            Self::Refund(_) => REFUND_REFUSED,
            _ => USE_REFUSED,
        }
    }

    /// Made in Redis (pending in the user's cache until settled).
    fn made_in_redis(&self) -> bool {
        !matches!(self, Self::Earn { .. })
    }
}

/// A change the database refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its txid.
    pub txid: String,
    /// Whose.
    pub user_id: String,
    /// Points it asked for.
    pub amount: u64,
    /// Why.
    pub reason: &'static str,
    /// The trace id it arrived with (a refund that waited for its use is not in the batch).
    pub trace_id: String,
}

/// What writing a list of changes did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PointsOutcome {
    /// Ledger rows that moved a balance.
    pub written: u64,
    /// Changes already in the ledger.
    pub duplicates: u64,
    /// Changes refused now (recorded with delta 0) or found refused before (a replay).
    pub refused: Vec<Refused>,
    /// Cache work, one per user touched, in commit order.
    pub settle: Vec<Settle>,
    /// Refunds parked now to wait for their use.
    pub parked: u64,
    /// Parked refunds decided now that their use arrived.
    pub unparked: u64,
}

struct Account {
    balance: i64,
    version: u64,
    moved: bool,
    txids: Vec<String>,
}

/// A ledger row, stored or written by this batch.
struct Known {
    delta: i64,
    refused: bool,
    user_id: String,
}

/// A ledger row to insert.
struct NewRow {
    txid: String,
    user_id: String,
    delta: i64,
    reason: &'static str,
    reference: String,
}

/// A refund waiting for its use, from this batch or from `parked_events`.
struct Waiting {
    refund: PointsRefunded,
    trace_id: String,
    /// Its row in `parked_events`, when it was parked by an earlier batch.
    parked: Option<(String, String)>,
}

/// The decisions of one batch, against the balances and ledger as they stand.
struct Books {
    accounts: BTreeMap<String, Account>,
    known: HashMap<String, Known>,
    rows: Vec<NewRow>,
    /// Refusals announced by this batch (a change replayed within it is announced once).
    announced: HashSet<String>,
    outcome: PointsOutcome,
}

enum Decided {
    /// Written, refused, or found in the ledger.
    Done,
    /// A refund whose use is not in the ledger yet.
    Waits,
}

impl Books {
    fn decide(&mut self, change: &Change, trace_id: &str) -> Decided {
        let txid = change.txid();
        let user = change.user_id();
        if let Some(known) = self.known.get(&txid) {
            // Already in the ledger (a replay): nothing moves, a refusal is announced again.
            self.outcome.duplicates += 1;
            let refused = known.refused;
            self.settled(change, &txid);
            if refused {
                self.refuse(change, &txid, trace_id);
            }
            return Decided::Done;
        }
        let spendable = self.accounts.get(user).map(|a| a.balance);
        let (delta, reason, reference) = match change {
            Change::Earn {
                order_id, points, ..
            } => (points_delta(*points), "earn", order_id.as_str()),
            Change::Use(used) => {
                let amount = points_delta(used.amount);
                if spendable.is_some_and(|balance| balance >= amount) {
                    (-amount, "use", used.order_id.as_str())
                } else {
                    (0, "rejected", used.order_id.as_str())
                }
            }
            Change::Refund(refund) => {
                let Some(used) = self.known.get(&refund.use_txid) else {
                    return Decided::Waits;
                };
                let amount = points_delta(refund.amount);
                // The use gave these points, to this user (whose balance row is locked).
                if used.delta == -amount && used.user_id == refund.user_id && spendable.is_some() {
                    (amount, "refund", refund.use_txid.as_str())
                } else {
                    (0, "rejected", refund.use_txid.as_str())
                }
            }
        };
        self.settled(change, &txid);
        if reason == "rejected" {
            self.refuse(change, &txid, trace_id);
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
    fn settled(&mut self, change: &Change, txid: &str) {
        if change.made_in_redis()
            && let Some(account) = self.accounts.get_mut(change.user_id())
        {
            account.txids.push(txid.to_owned());
        }
    }

    fn refuse(&mut self, change: &Change, txid: &str, trace_id: &str) {
        if self.announced.insert(txid.to_owned()) {
            self.outcome.refused.push(Refused {
                txid: txid.to_owned(),
                user_id: change.user_id().to_owned(),
                amount: change.amount(),
                reason: change.refusal(),
                trace_id: trace_id.to_owned(),
            });
        }
    }
}

/// Writes `changes` (in delivery order) in the caller's transaction; `traces` gives the trace
/// id of a change by its txid.
pub async fn write(
    tx: &mut MySqlConnection,
    changes: &[Change],
    traces: &HashMap<String, String>,
) -> Result<PointsOutcome, sqlx::Error> {
    if changes.is_empty() {
        return Ok(PointsOutcome::default());
    }

    // 1. Lock the users' balance rows (in key order) and read them.
    let mut accounts: BTreeMap<String, Account> = changes
        .iter()
        .map(|c| {
            let account = Account {
                balance: 0,
                version: 0,
                moved: false,
                txids: Vec::new(),
            };
            (c.user_id().to_owned(), account)
        })
        .collect();
    let mut query = QueryBuilder::new(
        "SELECT user_id, balance, version FROM point_balances WHERE user_id IN (",
    );
    let mut list = query.separated(", ");
    for user in accounts.keys() {
        list.push_bind(user.as_str());
    }
    query.push(") ORDER BY user_id FOR UPDATE");
    for row in query.build().fetch_all(&mut *tx).await? {
        let user: String = row.try_get("user_id")?;
        if let Some(account) = accounts.get_mut(&user) {
            account.balance = row.try_get("balance")?;
            account.version = row.try_get("version")?;
        }
    }
    let versions_before: HashMap<String, u64> = accounts
        .iter()
        .map(|(user, a)| (user.clone(), a.version))
        .collect();

    // 2. Which txids the ledger holds already (and the uses that refunds give back).
    let mut query =
        QueryBuilder::new("SELECT txid, user_id, delta, reason FROM point_ledger WHERE txid IN (");
    let mut list = query.separated(", ");
    for change in changes {
        list.push_bind(change.txid());
        if let Change::Refund(refund) = change {
            list.push_bind(refund.use_txid.clone());
        }
    }
    query.push(")");
    let mut known: HashMap<String, Known> = HashMap::new();
    for row in query.build().fetch_all(&mut *tx).await? {
        let reason: String = row.try_get("reason")?;
        known.insert(
            row.try_get("txid")?,
            Known {
                delta: row.try_get("delta")?,
                refused: reason == "rejected",
                user_id: row.try_get("user_id")?,
            },
        );
    }

    // 3. Refunds parked by earlier batches for the uses of this one. Under the balance row
    //    locks: a batch parking a refund of this user has committed or waits for this one.
    let uses: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Use(used) => Some(used.txid.as_str()),
            _ => None,
        })
        .collect();
    let mut waiting: HashMap<String, Vec<Waiting>> = HashMap::new();
    for parked in parked::load(tx, parked::USE, &uses).await? {
        match serde_json::from_str::<PointsRefunded>(&parked.data) {
            Ok(refund) => waiting
                .entry(parked.waits_for.clone())
                .or_default()
                .push(Waiting {
                    refund,
                    trace_id: parked.trace_id,
                    parked: Some((parked.waits_for, parked.event_key)),
                }),
            // Left where it is, counted in the parked gauge, for an operator to look at.
            Err(err) => tracing::error!(
                use_txid = parked.waits_for,
                refund_txid = parked.event_key,
                error = %err,
                "a parked refund cannot be read back"
            ),
        }
    }

    // 4. Decide each change against the balance as it stands; a use is followed by the
    //    refunds that waited for it.
    let mut books = Books {
        accounts,
        known,
        rows: Vec::new(),
        announced: HashSet::new(),
        outcome: PointsOutcome::default(),
    };
    let mut released: Vec<(String, String)> = Vec::new();
    for change in changes {
        let txid = change.txid();
        let trace_id = traces.get(&txid).map_or("", String::as_str);
        match books.decide(change, trace_id) {
            Decided::Waits => {
                if let Change::Refund(refund) = change {
                    waiting
                        .entry(refund.use_txid.clone())
                        .or_default()
                        .push(Waiting {
                            refund: refund.clone(),
                            trace_id: trace_id.to_owned(),
                            parked: None,
                        });
                }
            }
            Decided::Done => {
                let Change::Use(_) = change else { continue };
                for refund in waiting.remove(&txid).unwrap_or_default() {
                    books.decide(&Change::Refund(refund.refund), &refund.trace_id);
                    if let Some(key) = refund.parked {
                        books.outcome.unparked += 1;
                        released.push(key);
                    }
                }
            }
        }
    }
    let mut outcome = std::mem::take(&mut books.outcome);

    // 5. One multi-row insert into the ledger, one upsert of the balances that moved.
    if !books.rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO point_ledger (txid, user_id, delta, reason, reference) ",
        );
        insert.push_values(&books.rows, |mut row, entry| {
            row.push_bind(&entry.txid)
                .push_bind(&entry.user_id)
                .push_bind(entry.delta)
                .push_bind(entry.reason)
                .push_bind(&entry.reference);
        });
        insert.build().execute(&mut *tx).await?;
    }
    let moved: Vec<(&String, &Account)> = books.accounts.iter().filter(|(_, a)| a.moved).collect();
    if !moved.is_empty() {
        let mut upsert =
            QueryBuilder::new("INSERT INTO point_balances (user_id, balance, version) ");
        upsert.push_values(&moved, |mut row, (user, account)| {
            row.push_bind(user.as_str())
                .push_bind(account.balance)
                .push_bind(account.version + 1);
        });
        upsert
            .push(" ON DUPLICATE KEY UPDATE balance = VALUES(balance), version = VALUES(version)");
        upsert.build().execute(&mut *tx).await?;
    }

    // 6. Refunds of this batch still without their use wait; parked ones decided go.
    let mut park: Vec<Parked> = Vec::new();
    let mut parking: HashSet<String> = HashSet::new();
    for (use_txid, refunds) in waiting {
        for refund in refunds {
            if refund.parked.is_none() && parking.insert(refund.refund.txid.clone()) {
                park.push(Parked {
                    waits_for: use_txid.clone(),
                    event_key: refund.refund.txid.clone(),
                    event_type: POINTS_REFUNDED.to_owned(),
                    data: serde_json::to_string(&refund.refund)
                        .map_err(|err| sqlx::Error::Encode(Box::new(err)))?,
                    trace_id: refund.trace_id,
                });
            }
        }
    }
    outcome.parked = park.len() as u64;
    parked::park(tx, parked::USE, &park).await?;
    parked::release(tx, parked::USE, &released).await?;

    for (user, account) in books.accounts {
        let from = versions_before.get(&user).copied().unwrap_or_default();
        outcome.settle.push(Settle {
            to: if account.moved { from + 1 } else { from },
            user_id: user,
            from,
            balance: account.balance,
            txids: account.txids,
        });
    }
    Ok(outcome)
}

fn points_delta(points: u64) -> i64 {
    i64::try_from(points).unwrap_or(i64::MAX)
}
