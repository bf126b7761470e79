//! Writing a batch of coupon events to MySQL in one transaction, idempotently: issued coupons
//! with the guards `issued + 1 <= total_quantity` and one row per (policy, user, claim_no), and
//! redemption changes applied only when newer (`seq`) than what is stored.

use std::collections::{HashMap, HashSet};

use flashgate_events::{CouponIssued, CouponRedemption};
use sqlx::{MySqlPool, QueryBuilder, Row};

/// What one batch of coupon events did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CouponOutcome {
    /// Coupons inserted as `issued` (they now count in `coupon_policies.issued`).
    pub issued: Vec<String>,
    /// Coupons already stored (a replay or a re-send): nothing changed for them.
    pub duplicates: Vec<String>,
    /// Coupons stored as `rejected` (the policy was exhausted in MySQL, or the user already
    /// holds this claim number), and duplicates found already rejected.
    pub rejected: Vec<CouponIssued>,
    /// Coupons whose policy does not exist: never insertable.
    pub unknown_policy: Vec<String>,
    /// Redemption changes applied.
    pub changed: u64,
    /// Redemption changes older than what is stored (replays): ignored.
    pub stale: u64,
    /// Redemption changes of coupons MySQL does not hold: never applicable.
    pub unknown_coupon: Vec<String>,
}

/// A change and whether it redeems (true) or cancels a redemption.
pub type Change = (bool, CouponRedemption);

/// Writes `issued` and then `changes` (each in delivery order) in one transaction.
pub async fn persist_coupons(
    db: &MySqlPool,
    issued: &[CouponIssued],
    changes: &[Change],
) -> Result<CouponOutcome, sqlx::Error> {
    let mut outcome = CouponOutcome::default();
    if issued.is_empty() && changes.is_empty() {
        return Ok(outcome);
    }
    let mut tx = db.begin().await?;

    // 1. Lock the policies of new coupons and read their counters.
    let mut room: HashMap<u64, (u64, u64)> = HashMap::new();
    let policy_ids: HashSet<u64> = issued.iter().map(|c| c.policy_id).collect();
    if !policy_ids.is_empty() {
        let mut query = QueryBuilder::new(
            "SELECT policy_id, total_quantity, issued FROM coupon_policies WHERE policy_id IN (",
        );
        let mut list = query.separated(", ");
        for id in &policy_ids {
            list.push_bind(*id);
        }
        query.push(") FOR UPDATE");
        for row in query.build().fetch_all(&mut *tx).await? {
            let total: u32 = row.try_get("total_quantity")?;
            let count: u32 = row.try_get("issued")?;
            room.insert(
                row.try_get("policy_id")?,
                (u64::from(total), u64::from(count)),
            );
        }
    }

    // 2. What is stored of these coupons, and which claim numbers their users hold.
    let mut stored: HashMap<String, (String, u64)> = HashMap::new();
    let mut taken: HashSet<(u64, String, u32)> = HashSet::new();
    let ids: HashSet<&str> = issued
        .iter()
        .map(|c| c.coupon_id.as_str())
        .chain(changes.iter().map(|(_, c)| c.coupon_id.as_str()))
        .collect();
    if !ids.is_empty() {
        let mut query =
            QueryBuilder::new("SELECT coupon_id, status, seq FROM coupons WHERE coupon_id IN (");
        let mut list = query.separated(", ");
        for id in &ids {
            list.push_bind(*id);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *tx).await? {
            stored.insert(
                row.try_get("coupon_id")?,
                (row.try_get("status")?, row.try_get("seq")?),
            );
        }
    }
    if !issued.is_empty() {
        let mut query = QueryBuilder::new(
            "SELECT policy_id, user_id, claim_no FROM coupons \
             WHERE claim_no IS NOT NULL AND (policy_id, user_id) IN (",
        );
        let mut list = query.separated(", ");
        for coupon in issued {
            list.push("(")
                .push_bind_unseparated(coupon.policy_id)
                .push_unseparated(", ")
                .push_bind_unseparated(&coupon.user_id)
                .push_unseparated(")");
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *tx).await? {
            taken.insert((
                row.try_get("policy_id")?,
                row.try_get("user_id")?,
                row.try_get("claim_no")?,
            ));
        }
    }

    // 3. Decide each new coupon, in delivery order.
    let mut rows: Vec<(&CouponIssued, bool)> = Vec::new();
    let mut issued_delta: HashMap<u64, u64> = HashMap::new();
    for coupon in issued {
        if let Some((status, _)) = stored.get(&coupon.coupon_id) {
            outcome.duplicates.push(coupon.coupon_id.clone());
            if status == "rejected" {
                outcome.rejected.push(coupon.clone());
            }
            continue;
        }
        let Some((total, count)) = room.get_mut(&coupon.policy_id) else {
            outcome.unknown_policy.push(coupon.coupon_id.clone());
            continue;
        };
        let claim = (coupon.policy_id, coupon.user_id.clone(), coupon.claim_no);
        let accepted = *count < *total && !taken.contains(&claim);
        if accepted {
            *count += 1;
            *issued_delta.entry(coupon.policy_id).or_default() += 1;
            taken.insert(claim);
            outcome.issued.push(coupon.coupon_id.clone());
        } else {
            outcome.rejected.push(coupon.clone());
        }
        let status = if accepted { "issued" } else { "rejected" };
        stored.insert(coupon.coupon_id.clone(), (status.to_owned(), 1));
        rows.push((coupon, accepted));
    }
    if !rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO coupons (coupon_id, policy_id, user_id, claim_no, status, seq, \
             issued_at, expires_at) ",
        );
        insert.push_values(&rows, |mut row, (coupon, accepted)| {
            row.push_bind(&coupon.coupon_id)
                .push_bind(coupon.policy_id)
                .push_bind(&coupon.user_id)
                .push_bind(accepted.then_some(coupon.claim_no))
                .push_bind(if *accepted { "issued" } else { "rejected" })
                .push_bind(1u64)
                .push_bind(coupon.issued_at.naive_utc())
                .push_bind(coupon.expires_at.naive_utc());
        });
        insert.build().execute(&mut *tx).await?;
    }
    for (policy_id, delta) in issued_delta {
        sqlx::query("UPDATE coupon_policies SET issued = issued + ? WHERE policy_id = ?")
            .bind(delta)
            .bind(policy_id)
            .execute(&mut *tx)
            .await?;
    }

    // 4. Redemption changes, newest wins.
    for (redeemed, change) in changes {
        match stored.get_mut(&change.coupon_id) {
            None => outcome.unknown_coupon.push(change.coupon_id.clone()),
            Some((status, seq)) if status == "rejected" || *seq >= change.seq => {
                outcome.stale += 1;
            }
            Some((status, seq)) => {
                let (new_status, order, discount, at) = if *redeemed {
                    (
                        "redeemed",
                        Some(change.order_id.as_str()),
                        Some(change.discount),
                        Some(change.at.naive_utc()),
                    )
                } else {
                    ("issued", None, None, None)
                };
                sqlx::query(
                    "UPDATE coupons SET status = ?, order_id = ?, discount = ?, redeemed_at = ?, \
                     seq = ? WHERE coupon_id = ? AND seq < ?",
                )
                .bind(new_status)
                .bind(order)
                .bind(discount)
                .bind(at)
                .bind(change.seq)
                .bind(&change.coupon_id)
                .bind(change.seq)
                .execute(&mut *tx)
                .await?;
                new_status.clone_into(status);
                *seq = change.seq;
                outcome.changed += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(outcome)
}
