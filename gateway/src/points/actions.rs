//! Spending points and giving a use back: one `EVALSHA` each (`lua/points_use.lua`,
//! `lua/points_cancel.lua`) through the bucket's outbox, and their replies as values.

use fred::prelude::{Pool, Value};

use crate::points::cache::UserPoints;
use crate::scripts::{Script, int, reply_int, reply_text, unexpected_reply};

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
    /// Refuse (`overloaded`) when the bucket's outbox holds this many entries: Kafka is
    /// behind, and the backlog must not grow without bound.
    pub outbox_max: u64,
    /// TTL of stored answers, seconds.
    pub idempotency_ttl_secs: u64,
    /// TTL of the use record, seconds.
    pub record_ttl_secs: u64,
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
    /// Refuse (`overloaded`) when the bucket's outbox holds this many entries: Kafka is
    /// behind, and the backlog must not grow without bound.
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
