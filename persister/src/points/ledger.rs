//! Points in MySQL: ledger rows (unique `txid`) and the balance row they move, written in the
//! caller's transaction; then, after the commit, the users' Redis caches brought in step by
//! version (`lua/points_settle.lua`).
//!
//! The balance rows are locked first (`FOR UPDATE`), so every change of a user is decided
//! against the balance as it is, and the row's `version` goes up by one per commit that
//! moved it. A use the balance cannot pay for, and a refund of a use that was refused or is
//! unknown, are recorded with delta 0 and reason `rejected` (so a replay finds them) and
//! announced as `points.rejected`.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use flashgate_events::keys::PointsKeys;
use flashgate_events::{PointsRefunded, PointsUsed, earn_txid};
use fred::prelude::Pool;
use fred::types::scripts::Script;
use sqlx::{MySqlConnection, QueryBuilder, Row};

/// How long a `floor` left on a dropped cache is kept (a rebuild in flight takes far less).
const FLOOR_TTL_MS: u64 = 30_000;

/// Most users settled by one script call.
const USERS_PER_CALL: usize = 200;

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
    fn txid(&self) -> String {
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
}

/// The cache work one user needs after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// The user.
    pub user_id: String,
    /// The balance row's version before the commit.
    pub from: u64,
    /// Its version after (the same when nothing moved the balance).
    pub to: u64,
    /// The balance after.
    pub balance: i64,
    /// Redis-made changes settled: written, found written, or refused.
    pub txids: Vec<String>,
}

/// What writing a list of changes did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PointsOutcome {
    /// Ledger rows that moved a balance.
    pub written: u64,
    /// Changes already in the ledger.
    pub duplicates: u64,
    /// Changes refused now (recorded with delta 0) or found refused before.
    pub refused: Vec<Refused>,
    /// Cache work, one per user touched, in commit order.
    pub settle: Vec<Settle>,
}

struct Account {
    balance: i64,
    version: u64,
    moved: bool,
    txids: Vec<String>,
}

/// Writes `changes` (in delivery order) in the caller's transaction.
pub async fn write(
    tx: &mut MySqlConnection,
    changes: &[Change],
) -> Result<PointsOutcome, sqlx::Error> {
    let mut outcome = PointsOutcome::default();
    if changes.is_empty() {
        return Ok(outcome);
    }

    // 1. Lock the users' balance rows (in key order) and read them.
    let mut accounts: BTreeMap<&str, Account> = changes
        .iter()
        .map(|c| {
            let account = Account {
                balance: 0,
                version: 0,
                moved: false,
                txids: Vec::new(),
            };
            (c.user_id(), account)
        })
        .collect();
    let mut query = QueryBuilder::new(
        "SELECT user_id, balance, version FROM point_balances WHERE user_id IN (",
    );
    let mut list = query.separated(", ");
    for user in accounts.keys() {
        list.push_bind(*user);
    }
    query.push(") ORDER BY user_id FOR UPDATE");
    for row in query.build().fetch_all(&mut *tx).await? {
        let user: String = row.try_get("user_id")?;
        if let Some(account) = accounts.get_mut(user.as_str()) {
            account.balance = row.try_get("balance")?;
            account.version = row.try_get("version")?;
        }
    }
    let versions_before: HashMap<String, u64> = accounts
        .iter()
        .map(|(user, a)| ((*user).to_owned(), a.version))
        .collect();

    // 2. Which txids the ledger holds already (and the uses that refunds give back).
    let mut query = QueryBuilder::new("SELECT txid, delta FROM point_ledger WHERE txid IN (");
    let mut list = query.separated(", ");
    for change in changes {
        list.push_bind(change.txid());
        if let Change::Refund(refund) = change {
            list.push_bind(refund.use_txid.clone());
        }
    }
    query.push(")");
    let mut known: HashMap<String, i64> = HashMap::new();
    for row in query.build().fetch_all(&mut *tx).await? {
        known.insert(row.try_get("txid")?, row.try_get("delta")?);
    }

    // 3. Decide each change against the balance as it stands.
    struct Row<'a> {
        txid: String,
        user_id: &'a str,
        delta: i64,
        reason: &'static str,
        reference: &'a str,
    }
    let mut rows: Vec<Row<'_>> = Vec::new();
    for change in changes {
        let txid = change.txid();
        let user = change.user_id();
        let Some(account) = accounts.get_mut(user) else {
            continue;
        };
        if change.made_in_redis() {
            account.txids.push(txid.clone());
        }
        if known.contains_key(&txid) {
            outcome.duplicates += 1;
            continue;
        }
        let (delta, reason, reference, refused) = match change {
            Change::Earn {
                order_id, points, ..
            } => (points_delta(*points), "earn", order_id.as_str(), None),
            Change::Use(used) => {
                let amount = points_delta(used.amount);
                if account.balance >= amount {
                    (-amount, "use", used.order_id.as_str(), None)
                } else {
                    let why = "the balance in the system of record is too low";
                    (
                        0,
                        "rejected",
                        used.order_id.as_str(),
                        Some((used.amount, why)),
                    )
                }
            }
            Change::Refund(refund) => {
                let amount = points_delta(refund.amount);
                if known.get(&refund.use_txid) == Some(&-amount) {
                    (amount, "refund", refund.use_txid.as_str(), None)
                } else {
                    let why = "its use was refused or is not in the system of record";
                    (
                        0,
                        "rejected",
                        refund.use_txid.as_str(),
                        Some((refund.amount, why)),
                    )
                }
            }
        };
        if let Some((amount, reason)) = refused {
            outcome.refused.push(Refused {
                txid: txid.clone(),
                user_id: user.to_owned(),
                amount,
                reason,
            });
        }
        account.balance += delta;
        if delta != 0 {
            account.moved = true;
            outcome.written += 1;
        }
        known.insert(txid.clone(), delta);
        rows.push(Row {
            txid,
            user_id: user,
            delta,
            reason,
            reference,
        });
    }

    // 4. One multi-row insert into the ledger, one upsert of the balances that moved.
    if !rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO point_ledger (txid, user_id, delta, reason, reference) ",
        );
        insert.push_values(&rows, |mut row, entry| {
            row.push_bind(&entry.txid)
                .push_bind(entry.user_id)
                .push_bind(entry.delta)
                .push_bind(entry.reason)
                .push_bind(entry.reference);
        });
        insert.build().execute(&mut *tx).await?;
    }
    let moved: Vec<(&str, &Account)> = accounts
        .iter()
        .filter(|(_, a)| a.moved)
        .map(|(u, a)| (*u, a))
        .collect();
    if !moved.is_empty() {
        let mut upsert =
            QueryBuilder::new("INSERT INTO point_balances (user_id, balance, version) ");
        upsert.push_values(&moved, |mut row, (user, account)| {
            row.push_bind(*user)
                .push_bind(account.balance)
                .push_bind(account.version + 1);
        });
        upsert
            .push(" ON DUPLICATE KEY UPDATE balance = VALUES(balance), version = VALUES(version)");
        upsert.build().execute(&mut *tx).await?;
    }

    for (user, account) in accounts {
        let from = versions_before.get(user).copied().unwrap_or_default();
        outcome.settle.push(Settle {
            user_id: user.to_owned(),
            from,
            to: if account.moved { from + 1 } else { from },
            balance: account.balance,
            txids: account.txids,
        });
    }
    Ok(outcome)
}

fn points_delta(points: u64) -> i64 {
    i64::try_from(points).unwrap_or(i64::MAX)
}

/// Writes point events (uses and refunds) in a transaction of their own.
pub async fn persist_points(
    db: &sqlx::MySqlPool,
    changes: &[Change],
) -> Result<PointsOutcome, sqlx::Error> {
    if changes.is_empty() {
        return Ok(PointsOutcome::default());
    }
    let mut tx = db.begin().await?;
    let outcome = write(&mut tx, changes).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Brings the Redis caches in step with committed changes.
#[derive(Debug, Clone)]
pub struct Caches {
    redis: Pool,
    prefix: String,
    script: Script,
}

impl Caches {
    /// Caches under `prefix` (`redis.key_prefix`).
    pub fn new(redis: Pool, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            script: Script::from_lua(include_str!("../../lua/points_settle.lua")),
        }
    }

    /// Runs the settle script for `work`, one call per bucket and chunk, keeping each user's
    /// entries in order. Safe to repeat: a batch retried after a failure here settles again.
    pub async fn settle(&self, work: &[Settle]) -> anyhow::Result<()> {
        let mut by_bucket: BTreeMap<u32, Vec<&Settle>> = BTreeMap::new();
        for settle in work {
            let bucket = flashgate_events::keys::points_bucket(&settle.user_id);
            by_bucket.entry(bucket).or_default().push(settle);
        }
        for (bucket, work) in by_bucket {
            let keys = PointsKeys::new(&self.prefix, bucket);
            for chunk in work.chunks(USERS_PER_CALL) {
                let names: Vec<String> = chunk.iter().map(|s| keys.balance(&s.user_id)).collect();
                let mut args: Vec<String> = vec![FLOOR_TTL_MS.to_string()];
                for settle in chunk {
                    args.push(settle.from.to_string());
                    args.push(settle.to.to_string());
                    args.push(settle.balance.to_string());
                    args.push(settle.txids.len().to_string());
                    args.extend(settle.txids.iter().cloned());
                }
                let _: Vec<String> = self
                    .script
                    .evalsha_with_reload(self.redis.next(), names, args)
                    .await
                    .context("settling point caches in Redis")?;
            }
        }
        Ok(())
    }
}
