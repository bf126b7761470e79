//! Coupons as persisted in MySQL, put back into Redis when Redis lost one, and the holder's
//! list (its status read live from Redis).

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use fred::prelude::{HashesInterface, Pool, Value};
use serde::Serialize;
use sqlx::{MySqlPool, Row};

use crate::app::App;
use crate::failure::Failure;
use crate::keys::PolicyKeys;
use crate::scripts::{Script, int};

/// One coupon as its holder sees it.
#[derive(Debug, Clone, Serialize)]
pub struct CouponView {
    /// The coupon.
    pub coupon_id: String,
    /// Its policy.
    pub policy_id: u64,
    /// `issued`, `redeemed` or `expired` (`rejected` when the database refused it).
    pub status: String,
    /// When it was claimed.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The order it is redeemed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The discount it granted there, minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discount: Option<u64>,
}

/// A persisted coupon: its view, holder and change sequence.
#[derive(Debug, Clone)]
pub struct StoredCoupon {
    /// As shown.
    pub view: CouponView,
    /// The holder.
    pub user_id: String,
    /// Its last persisted change.
    pub seq: u64,
}

const COLUMNS: &str =
    "coupon_id, policy_id, user_id, status, seq, order_id, discount,      issued_at, expires_at";

fn from_row(row: &sqlx::mysql::MySqlRow) -> Result<StoredCoupon, sqlx::Error> {
    let issued: NaiveDateTime = row.try_get("issued_at")?;
    let expires: NaiveDateTime = row.try_get("expires_at")?;
    Ok(StoredCoupon {
        view: CouponView {
            coupon_id: row.try_get("coupon_id")?,
            policy_id: row.try_get("policy_id")?,
            status: row.try_get("status")?,
            issued_at: issued.and_utc(),
            expires_at: expires.and_utc(),
            order_id: row.try_get("order_id")?,
            discount: row.try_get("discount")?,
        },
        user_id: row.try_get("user_id")?,
        seq: row.try_get("seq")?,
    })
}

/// The persisted coupon with `coupon_id`, if any.
pub async fn find(db: &MySqlPool, coupon_id: &str) -> anyhow::Result<Option<StoredCoupon>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM coupons WHERE coupon_id = ?"
    )))
    .bind(coupon_id)
    .fetch_optional(db)
    .await
    .context("reading coupon")?;
    row.as_ref()
        .map(from_row)
        .transpose()
        .context("decoding coupon")
}

/// Puts a persisted coupon back into Redis unless Redis has it. Returns whether it loaded.
pub async fn load_into_redis(
    redis: &Pool,
    script: &Script,
    keys: &PolicyKeys,
    coupon: &StoredCoupon,
) -> anyhow::Result<bool> {
    let view = &coupon.view;
    let args: Vec<Value> = vec![
        coupon.user_id.as_str().into(),
        view.status.as_str().into(),
        view.expires_at.timestamp_millis().into(),
        int(coupon.seq),
        view.order_id.clone().unwrap_or_default().into(),
        int(view.discount.unwrap_or(0)),
        view.issued_at.timestamp_millis().into(),
    ];
    let loaded: i64 = script
        .run(redis, vec![keys.coupon(&view.coupon_id)], args)
        .await
        .context("loading coupon into Redis")?;
    Ok(loaded == 1)
}

/// A page of the caller's coupons, newest first, after `cursor` (see [`list_for_user`]).
pub async fn coupons_of(
    app: &App,
    user: &str,
    cursor: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> Result<Vec<CouponView>, Failure> {
    app.guards
        .mysql
        .call(async {
            list_for_user(&app.db, &app.redis, app.prefix(), user, cursor, limit)
                .await
                .map_err(Failure::Mysql)
        })
        .await
}

/// A page of `user`'s persisted coupons, newest first, after `cursor`. Redis holds the latest
/// redemption state (MySQL may be a moment behind), so each coupon's status is read there when
/// present; an `issued` coupon past its expiry shows as `expired`.
pub async fn list_for_user(
    db: &MySqlPool,
    redis: &Pool,
    prefix: &str,
    user: &str,
    cursor: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> anyhow::Result<Vec<CouponView>> {
    // Without a cursor: everything before the end of MySQL's DATETIME range.
    let (at, id) = cursor.unwrap_or_else(|| {
        let end = DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31 is a time");
        (end, String::new())
    });
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM coupons WHERE user_id = ? \
         AND (issued_at < ? OR (issued_at = ? AND coupon_id < ?)) \
         ORDER BY issued_at DESC, coupon_id DESC LIMIT ?"
    )))
    .bind(user)
    .bind(at.naive_utc())
    .bind(at.naive_utc())
    .bind(&id)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("listing coupons")?;
    let stored = rows
        .iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()
        .context("decoding coupons")?;
    let now = Utc::now();
    let mut views = Vec::with_capacity(stored.len());
    for coupon in stored {
        let mut view = coupon.view;
        if view.status != "rejected" {
            let keys = PolicyKeys::new(prefix, view.policy_id);
            let live: Vec<Option<String>> = redis
                .hmget(
                    keys.coupon(&view.coupon_id),
                    vec!["status", "order_id", "discount"],
                )
                .await
                .context("reading coupon state")?;
            if let [Some(status), order, discount] = live.as_slice() {
                view.status.clone_from(status);
                view.order_id = order.clone().filter(|o| !o.is_empty());
                view.discount = discount
                    .as_deref()
                    .and_then(|d| d.parse().ok())
                    .filter(|_| view.order_id.is_some());
            }
            if view.status == "issued" && view.expires_at <= now {
                view.status = "expired".to_owned();
            }
        }
        views.push(view);
    }
    Ok(views)
}
