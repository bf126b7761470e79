//! Loyalty points as shoppers use them: the balance from the Redis cache (rebuilt from MySQL on
//! a miss), spending and giving back through one script and the bucket's outbox, and the
//! ledger's history from MySQL.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use fred::prelude::{HashesInterface, Pool, Value};
use serde::Serialize;
use sqlx::{MySqlPool, QueryBuilder, Row};

use crate::keys::PointsKeys;
use crate::scripts::{Script, reply_int, reply_text, unexpected_reply};

/// How often a rebuild is tried when the persister keeps moving the balance under it.
const FILL_ATTEMPTS: u32 = 5;

/// Why reading or rebuilding a balance failed.
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    /// Redis did not answer.
    #[error("Redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// MySQL did not answer.
    #[error("MySQL: {0:#}")]
    Mysql(anyhow::Error),
}

/// One user's point keys.
#[derive(Debug, Clone)]
pub struct UserPoints<'a> {
    /// The bucket's keys.
    pub keys: PointsKeys,
    /// The user.
    pub user_id: &'a str,
}

impl<'a> UserPoints<'a> {
    /// The keys of `user_id` under `prefix`.
    pub fn new(prefix: &str, user_id: &'a str) -> Self {
        Self {
            keys: PointsKeys::for_user(prefix, user_id),
            user_id,
        }
    }

    fn cache(&self) -> String {
        self.keys.balance(self.user_id)
    }
}

/// The spendable balance: the cache, or MySQL through a rebuild of the cache.
pub async fn balance(
    redis: &Pool,
    db: &MySqlPool,
    fill: &Script,
    user: &UserPoints<'_>,
) -> Result<i64, PointsError> {
    let (balance, version): (Option<i64>, Option<u64>) = redis
        .next()
        .hmget(user.cache(), vec!["balance", "version"])
        .await?;
    match (balance, version) {
        (Some(balance), Some(_)) => Ok(balance),
        _ => rebuild(redis, db, fill, user).await,
    }
}

/// Rebuilds the cache from one MySQL snapshot (`lua/points_fill.lua`) and returns the balance.
/// A change the persister announced after the snapshot makes it read MySQL again.
pub async fn rebuild(
    redis: &Pool,
    db: &MySqlPool,
    fill: &Script,
    user: &UserPoints<'_>,
) -> Result<i64, PointsError> {
    let key = user.cache();
    for attempt in 0..FILL_ATTEMPTS {
        let fields: Vec<String> = redis.next().hkeys(&key).await?;
        let pending: Vec<&str> = fields
            .iter()
            .filter_map(|f| f.strip_prefix("tx:"))
            .collect();
        let snapshot = snapshot(db, user.user_id, &pending)
            .await
            .map_err(PointsError::Mysql)?;
        let mut args: Vec<Value> = vec![snapshot.balance.into(), snapshot.version.into()];
        args.extend(snapshot.settled.into_iter().map(Value::from));
        let reply: Vec<Value> = fill.run(redis, vec![key.clone()], args).await?;
        match reply_text(&reply, 0).as_str() {
            "filled" | "present" => return Ok(reply_int(&reply, 1)),
            "stale" => {
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            other => return Err(unexpected_reply("points_fill", other).into()),
        }
    }
    Err(PointsError::Mysql(anyhow::anyhow!(
        "the balance of {} kept moving during {FILL_ATTEMPTS} rebuilds",
        user.user_id
    )))
}

/// A user's balance row and which of `pending` the ledger holds, in one snapshot.
struct Snapshot {
    balance: i64,
    version: i64,
    settled: Vec<String>,
}

async fn snapshot(db: &MySqlPool, user_id: &str, pending: &[&str]) -> anyhow::Result<Snapshot> {
    // One transaction: InnoDB's repeatable read gives both reads the same snapshot.
    let mut tx = db.begin().await.context("opening a snapshot")?;
    let row = sqlx::query("SELECT balance, version FROM point_balances WHERE user_id = ?")
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .context("reading the balance row")?;
    let (balance, version) = match row {
        Some(row) => (
            row.try_get::<i64, _>("balance")?,
            i64::try_from(row.try_get::<u64, _>("version")?).unwrap_or(i64::MAX),
        ),
        None => (0, 0),
    };
    let mut settled = Vec::new();
    if !pending.is_empty() {
        let mut query = QueryBuilder::new("SELECT txid FROM point_ledger WHERE txid IN (");
        let mut list = query.separated(", ");
        for txid in pending {
            list.push_bind(*txid);
        }
        query.push(")");
        for row in query
            .build()
            .fetch_all(&mut *tx)
            .await
            .context("reading settled txids")?
        {
            settled.push(row.try_get("txid")?);
        }
    }
    tx.commit().await.context("closing the snapshot")?;
    Ok(Snapshot {
        balance,
        version,
        settled,
    })
}

/// What the use script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    /// The points were taken; the event is in the outbox.
    Used {
        /// The use's txid.
        txid: String,
        /// Balance after it.
        balance: i64,
    },
    /// Fewer points than asked for.
    Insufficient {
        /// The balance.
        balance: i64,
    },
    /// The bucket's outbox is over its bound.
    Overloaded,
    /// The idempotency key was used with another request.
    KeyReused,
    /// No cache entry: rebuild it, then ask again.
    Miss,
}

/// One use of points to make.
#[derive(Debug, Clone)]
pub struct UseRequest<'a> {
    /// Whose points.
    pub user: &'a UserPoints<'a>,
    /// How many.
    pub amount: u64,
    /// The order they pay for.
    pub order_id: &'a str,
    /// Txid to give the use.
    pub txid: &'a str,
    /// Trace id of the request.
    pub trace_id: &'a str,
    /// The client's idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// Outbox bound.
    pub outbox_max: u64,
    /// TTL of stored answers, seconds.
    pub idempotency_ttl_secs: u64,
    /// TTL of the use record, seconds.
    pub record_ttl_secs: u64,
}

fn int(value: u64) -> Value {
    Value::from(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Runs `lua/points_use.lua` once.
pub async fn spend(
    redis: &Pool,
    script: &Script,
    request: &UseRequest<'_>,
) -> Result<Use, fred::error::Error> {
    let keys = &request.user.keys;
    let user_id = request.user.user_id;
    let mut names = vec![
        keys.balance(user_id),
        keys.use_record(request.txid),
        keys.outbox.clone(),
    ];
    if let Some(key) = request.idempotency_key {
        names.push(keys.idempotency(user_id, key));
    }
    let fingerprint = format!("amount={};order_id={}", request.amount, request.order_id);
    let args: Vec<Value> = vec![
        user_id.into(),
        int(request.amount),
        request.txid.into(),
        request.order_id.into(),
        request.trace_id.into(),
        int(request.outbox_max),
        int(request.idempotency_ttl_secs),
        fingerprint.into(),
        int(request.record_ttl_secs),
    ];
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    Ok(match reply_text(&reply, 0).as_str() {
        "used" | "replay" => Use::Used {
            txid: reply_text(&reply, 1),
            balance: reply_text(&reply, 2).parse().unwrap_or_default(),
        },
        "insufficient_points" => Use::Insufficient {
            balance: reply_int(&reply, 1),
        },
        "overloaded" => Use::Overloaded,
        "idempotency_key_reused" => Use::KeyReused,
        "miss" => Use::Miss,
        other => return Err(unexpected_reply("points_use", other)),
    })
}

/// What the cancel script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// Given back now.
    Cancelled {
        /// Points given back.
        amount: i64,
        /// Balance after.
        balance: i64,
    },
    /// Given back before (a retried cancel).
    AlreadyCancelled {
        /// Points given back.
        amount: i64,
    },
    /// No such use of this user in Redis.
    NotFound,
    /// No cache entry: rebuild it, then ask again.
    Miss,
    /// The bucket's outbox is over its bound.
    Overloaded,
}

/// One cancellation to make.
#[derive(Debug, Clone)]
pub struct CancelRequest<'a> {
    /// Whose points.
    pub user: &'a UserPoints<'a>,
    /// The use.
    pub use_txid: &'a str,
    /// The refund's txid.
    pub refund_txid: &'a str,
    /// Trace id.
    pub trace_id: &'a str,
    /// Outbox bound.
    pub outbox_max: u64,
    /// TTL of the use record, seconds.
    pub record_ttl_secs: u64,
    /// The use as MySQL holds it (amount, order), when Redis no longer has it.
    pub from_mysql: Option<(u64, String)>,
}

/// Runs `lua/points_cancel.lua` once.
pub async fn cancel(
    redis: &Pool,
    script: &Script,
    request: &CancelRequest<'_>,
) -> Result<Cancel, fred::error::Error> {
    let keys = &request.user.keys;
    let names = vec![
        keys.balance(request.user.user_id),
        keys.use_record(request.use_txid),
        keys.outbox.clone(),
    ];
    let (amount, order) = match &request.from_mysql {
        Some((amount, order)) => (amount.to_string(), order.clone()),
        None => (String::new(), String::new()),
    };
    let args: Vec<Value> = vec![
        request.user.user_id.into(),
        request.use_txid.into(),
        request.refund_txid.into(),
        request.trace_id.into(),
        int(request.outbox_max),
        int(request.record_ttl_secs),
        amount.into(),
        order.into(),
        // The call's own id: a re-send of this very call (the Redis client's, after a closed
        // connection) is answered as the first run was; another call is `already_cancelled`.
        uuid::Uuid::now_v7().simple().to_string().into(),
    ];
    let reply: Vec<Value> = script.run(redis, names, args).await?;
    Ok(match reply_text(&reply, 0).as_str() {
        "cancelled" => Cancel::Cancelled {
            amount: reply_int(&reply, 1),
            balance: reply_int(&reply, 2),
        },
        "already_cancelled" => Cancel::AlreadyCancelled {
            amount: reply_int(&reply, 1),
        },
        "not_found" => Cancel::NotFound,
        "miss" => Cancel::Miss,
        "overloaded" => Cancel::Overloaded,
        other => return Err(unexpected_reply("points_cancel", other)),
    })
}

/// A use as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUse {
    /// Points it took (0 when the database refused it).
    pub amount: u64,
    /// The order.
    pub order_id: String,
    /// Whether its refund is in the ledger too.
    pub refunded: bool,
}

/// The use `use_txid` of `user_id` from the ledger, if there is one.
pub async fn stored_use(
    db: &MySqlPool,
    user_id: &str,
    use_txid: &str,
    refund_txid: &str,
) -> anyhow::Result<Option<StoredUse>> {
    let rows = sqlx::query(
        "SELECT txid, delta, reference FROM point_ledger WHERE user_id = ? AND txid IN (?, ?)",
    )
    .bind(user_id)
    .bind(use_txid)
    .bind(refund_txid)
    .fetch_all(db)
    .await
    .context("reading a use from the ledger")?;
    let mut found: Option<StoredUse> = None;
    let mut refunded = false;
    for row in rows {
        let txid: String = row.try_get("txid")?;
        if txid == use_txid {
            let delta: i64 = row.try_get("delta")?;
            found = Some(StoredUse {
                amount: delta.unsigned_abs(),
                order_id: row
                    .try_get::<Option<String>, _>("reference")?
                    .unwrap_or_default(),
                refunded: false,
            });
        } else {
            refunded = true;
        }
    }
    Ok(found.map(|found| StoredUse { refunded, ..found }))
}

/// One row of the ledger as the shopper sees it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// Position in the ledger (the cursor of the next page).
    pub entry_id: u64,
    /// The change's txid.
    pub txid: String,
    /// Points: positive earned or given back, negative spent, 0 when refused.
    pub delta: i64,
    /// `earn`, `use`, `refund`, `rejected` or `adjust`.
    pub reason: String,
    /// The order, or the use a refund gives back.
    pub reference: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// `user_id`'s ledger rows, newest first, before `before` (an `entry_id`) when given.
pub async fn history(
    db: &MySqlPool,
    user_id: &str,
    before: Option<u64>,
    limit: u32,
) -> anyhow::Result<Vec<HistoryEntry>> {
    let rows = sqlx::query(
        "SELECT entry_id, txid, delta, reason, reference, created_at FROM point_ledger \
         WHERE user_id = ? AND entry_id < ? ORDER BY entry_id DESC LIMIT ?",
    )
    .bind(user_id)
    .bind(before.unwrap_or(u64::MAX))
    .bind(limit)
    .fetch_all(db)
    .await
    .context("reading the point ledger")?;
    rows.iter()
        .map(|row| {
            let created: NaiveDateTime = row.try_get("created_at")?;
            Ok(HistoryEntry {
                entry_id: row.try_get("entry_id")?,
                txid: row.try_get("txid")?,
                delta: row.try_get("delta")?,
                reason: row.try_get("reason")?,
                reference: row.try_get("reference")?,
                created_at: created.and_utc(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding the point ledger")
}
