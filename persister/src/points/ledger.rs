//! Points in MySQL: ledger rows (unique `txid`) and the balance row they move, written in the
//! batch's transaction.
//!
//! The balance rows are locked first (`FOR UPDATE`), so every change of a user is decided
//! against the balance as it is, and the row's `version` goes up by one per commit that
//! moved it. A paid order cancelled takes back what its `earn-<order>` row gave, or what the
//! balance holds when less (reason `unearn_partial`): a balance never goes below zero. A use the balance cannot pay for, and a refund of a use that was refused, are
//! recorded with delta 0 and reason `rejected` and announced as `points.rejected` — again on
//! every replay, as refused orders and coupons are. A refund whose use is not in the ledger
//! yet (a use and its refund can reach Kafka in either order) is neither applied nor refused:
//! it waits in `parked_events` and is decided, in delivery order after its use, by the
//! transaction that writes the use.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_events::{POINTS_REFUNDED, PointsRefunded, earn_txid};
use sqlx::{MySqlConnection, QueryBuilder, Row};

use super::Settle;
use super::books::{Account, Books, Decided, Known};
use super::changes::{PointChange, PointsOutcome};
use crate::parked::{self, Parked};

/// A refund waiting for its use, from this batch or from `parked_events`.
struct Waiting {
    refund: PointsRefunded,
    trace_id: String,
    /// Its row in `parked_events`, when it was parked by an earlier batch.
    parked: Option<(String, String)>,
}

/// Writes `changes` (in delivery order) in the caller's transaction; `traces` gives the trace
/// id of a change by its txid.
pub async fn write(
    tx: &mut MySqlConnection,
    changes: &[PointChange],
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

    // 2. Which txids the ledger holds already (and the uses that refunds give back, the
    //    earnings that take-backs take back).
    let mut query =
        QueryBuilder::new("SELECT txid, user_id, delta, reason FROM point_ledger WHERE txid IN (");
    let mut list = query.separated(", ");
    for change in changes {
        list.push_bind(change.txid());
        match change {
            PointChange::Refund(refund) => {
                list.push_bind(refund.use_txid.clone());
            }
            PointChange::Unearn { order_id, .. } => {
                list.push_bind(earn_txid(order_id));
            }
            PointChange::Earn { .. } | PointChange::Use(_) => {}
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
            PointChange::Use(used) => Some(used.txid.as_str()),
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
    let mut books = Books::new(accounts, known);
    let mut released: Vec<(String, String)> = Vec::new();
    for change in changes {
        let txid = change.txid();
        let trace_id = traces.get(&txid).map_or("", String::as_str);
        match books.decide(change, trace_id) {
            Decided::Waits => {
                if let PointChange::Refund(refund) = change {
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
                let PointChange::Use(_) = change else {
                    continue;
                };
                for refund in waiting.remove(&txid).unwrap_or_default() {
                    books.decide(&PointChange::Refund(refund.refund), &refund.trace_id);
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
