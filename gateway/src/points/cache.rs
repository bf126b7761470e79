//! A shopper's point balance as Redis caches it, rebuilt from one MySQL snapshot on a miss.
//!
//! The cache expires `points.cache_ttl_secs` after its last write once nothing of it is
//! pending (never while a change MySQL does not hold yet is in it: see `lua/points_use.lua`),
//! so a user who went away leaves nothing behind; the next read finds no entry and rebuilds it.

use std::time::Duration;

use anyhow::Context;
use fred::prelude::{HashesInterface, Value};
use sqlx::{MySqlPool, QueryBuilder, Row};

use crate::app::App;
use crate::failure::Failure;
use crate::keys::PointsKeys;
use crate::scripts::{int, reply_int, reply_text, unexpected_reply};

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
    /// MySQL did not answer in time, or its breaker is open.
    #[error(transparent)]
    Unavailable(#[from] crate::breaker::Unavailable),
    /// The persister kept moving the balance under every rebuild: no dependency failed.
    #[error("{0}")]
    Race(String),
}

impl From<PointsError> for Failure {
    fn from(err: PointsError) -> Self {
        match err {
            PointsError::Redis(source) => Failure::Unreachable {
                action: "points",
                source,
            },
            PointsError::Mysql(err) => Failure::Mysql(err),
            PointsError::Unavailable(unavailable) => Failure::Unavailable(unavailable),
            PointsError::Race(reason) => Failure::Internal(anyhow::anyhow!(reason)),
        }
    }
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

/// The caller's spendable balance.
pub async fn balance_of(app: &App, user_id: &str) -> Result<i64, Failure> {
    let user = UserPoints::new(app.prefix(), user_id);
    Ok(balance(app, &user).await?)
}

/// The spendable balance: the cache, or MySQL through a rebuild of the cache (none there, or
/// expired).
pub async fn balance(app: &App, user: &UserPoints<'_>) -> Result<i64, PointsError> {
    let (balance, version): (Option<i64>, Option<u64>) = app
        .redis
        .next()
        .hmget(user.cache(), vec!["balance", "version"])
        .await?;
    match (balance, version) {
        (Some(balance), Some(_)) => Ok(balance),
        _ => rebuild(app, user).await,
    }
}

/// Rebuilds the cache from one MySQL snapshot (`lua/points_fill.lua`) and returns the balance;
/// the rebuilt cache expires `points.cache_ttl_secs` from now unless changes of it are still
/// pending. A change the persister announced after the snapshot makes it read MySQL again.
pub async fn rebuild(app: &App, user: &UserPoints<'_>) -> Result<i64, PointsError> {
    let (redis, fill) = (&app.redis, &app.scripts.points_fill);
    let ttl_secs = app.settings.points.cache_ttl_secs;
    let key = user.cache();
    for attempt in 0..FILL_ATTEMPTS {
        let fields: Vec<String> = redis.next().hkeys(&key).await?;
        let pending: Vec<&str> = fields
            .iter()
            .filter_map(|f| f.strip_prefix("tx:"))
            .collect();
        let snapshot = app
            .guards
            .mysql
            .call(async {
                snapshot(&app.db, user.user_id, &pending)
                    .await
                    .map_err(Failure::Mysql)
            })
            .await
            .map_err(|failure| match failure {
                Failure::Unavailable(unavailable) => PointsError::Unavailable(unavailable),
                Failure::Mysql(err) => PointsError::Mysql(err),
                other => PointsError::Mysql(other.into()),
            })?;
        let mut args: Vec<Value> = vec![
            snapshot.balance.into(),
            snapshot.version.into(),
            int(ttl_secs),
        ];
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
    Err(PointsError::Race(format!(
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
