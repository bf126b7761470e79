//! Coupon events in MySQL, in the batch's transaction, idempotently: issued coupons with the
//! guards `issued + 1 <= total_quantity` and one row per (policy, user, claim_no), and
//! redemption changes applied only when newer (`seq`) than what is stored (see
//! [`super::rules`]).
//!
//! A change can reach the persister before its coupon (several relays, and a relay's re-send
//! after a crash, can reorder one coupon's events). It then waits in `parked_events` and is
//! applied by the transaction that inserts the coupon. Both sides hold the policy's row lock
//! when they look, so one of them always sees the other.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_events::{COUPON_REDEEMED, CouponIssued, CouponRedemption};
use sqlx::{MySqlConnection, QueryBuilder, Row};

use super::rules::{self, Candidate, ClaimSlot, CouponChange, CouponRow, CouponsOutcome, Room};
use crate::parked::{self, Parked};

/// Writes `issued` and then `changes` (each in delivery order) in the caller's transaction.
pub async fn write(
    tx: &mut MySqlConnection,
    issued: &[CouponIssued],
    changes: &[CouponChange],
) -> Result<CouponsOutcome, sqlx::Error> {
    let mut outcome = CouponsOutcome::default();
    if issued.is_empty() && changes.is_empty() {
        return Ok(outcome);
    }
    // The policies of new coupons locked, and what is stored of every coupon named.
    let policy_ids: HashSet<u64> = issued.iter().map(|c| c.policy_id).collect();
    let mut room = lock_policies(tx, &policy_ids).await?;
    let ids: HashSet<&str> = issued
        .iter()
        .map(|c| c.coupon_id.as_str())
        .chain(changes.iter().map(|c| c.data.coupon_id.as_str()))
        .collect();
    let mut stored = read_coupons(tx, &ids).await?;
    let inserted = issue(tx, issued, &mut room, &mut stored, &mut outcome).await?;
    change(tx, changes, &room, &mut stored, &inserted, &mut outcome).await?;
    Ok(outcome)
}

/// Decides the new coupons against their locked policies and inserts them; returns the ids
/// inserted.
async fn issue<'c>(
    tx: &mut MySqlConnection,
    issued: &'c [CouponIssued],
    room: &mut HashMap<u64, Room>,
    stored: &mut HashMap<String, CouponRow>,
    outcome: &mut CouponsOutcome,
) -> Result<Vec<&'c str>, sqlx::Error> {
    let mut taken = claims_taken(tx, issued).await?;
    let decided = rules::decide_issued(issued, room, stored, &mut taken, outcome);
    if !decided.rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO coupons (coupon_id, policy_id, user_id, claim_no, status, seq, \
             issued_at, expires_at) ",
        );
        insert.push_values(&decided.rows, |mut row, (coupon, accepted)| {
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
    for (policy_id, delta) in &decided.issued_delta {
        sqlx::query("UPDATE coupon_policies SET issued = issued + ? WHERE policy_id = ?")
            .bind(delta)
            .bind(policy_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(decided
        .rows
        .iter()
        .map(|(c, _)| c.coupon_id.as_str())
        .collect())
}

/// The claim numbers the users of `issued` hold in their policies.
async fn claims_taken(
    tx: &mut MySqlConnection,
    issued: &[CouponIssued],
) -> Result<HashSet<ClaimSlot>, sqlx::Error> {
    let mut taken = HashSet::new();
    if issued.is_empty() {
        return Ok(taken);
    }
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
    Ok(taken)
}

/// Applies the batch's redemption changes, and those parked for the coupons `inserted` now;
/// parks the changes whose coupon is not stored yet.
async fn change(
    tx: &mut MySqlConnection,
    changes: &[CouponChange],
    room: &HashMap<u64, Room>,
    stored: &mut HashMap<String, CouponRow>,
    inserted: &[&str],
    outcome: &mut CouponsOutcome,
) -> Result<(), sqlx::Error> {
    // 1. Changes of coupons not stored: look again under their policies' locks (a batch
    //    inserting the coupon holds that lock until it commits), so that none is parked
    //    while its coupon is being stored.
    let mut policies_exist: HashSet<u64> = room.keys().copied().collect();
    let unknown: Vec<usize> = (0..changes.len())
        .filter(|&i| !stored.contains_key(&changes[i].data.coupon_id))
        .collect();
    if !unknown.is_empty() {
        let policy_ids: HashSet<u64> = unknown
            .iter()
            .map(|&i| changes[i].data.policy_id)
            .filter(|id| !room.contains_key(id))
            .collect();
        policies_exist.extend(lock_policies(tx, &policy_ids).await?.into_keys());
        let ids: HashSet<&str> = unknown
            .iter()
            .map(|&i| changes[i].data.coupon_id.as_str())
            .collect();
        stored.extend(read_coupons(tx, &ids).await?);
    }

    // 2. Changes parked by earlier batches for the coupons inserted now.
    let mut candidates: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for parked in parked::load(tx, parked::COUPON, inserted).await? {
        match serde_json::from_str::<CouponRedemption>(&parked.data) {
            Ok(data) => candidates
                .entry(parked.waits_for.clone())
                .or_default()
                .push(Candidate {
                    redeemed: parked.event_type == COUPON_REDEEMED,
                    data,
                    parked: Some((parked.waits_for, parked.event_key)),
                }),
            // Left where it is, counted in the parked gauge, for an operator to look at.
            Err(err) => tracing::error!(
                coupon_id = parked.waits_for,
                seq = parked.event_key,
                error = %err,
                "a parked coupon change cannot be read back"
            ),
        }
    }

    // 3. This batch's changes: of a stored coupon, decided now; otherwise parked (or, when
    //    even the policy does not exist, never applicable).
    let mut park: Vec<Parked> = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        let coupon_id = &change.data.coupon_id;
        if stored.contains_key(coupon_id) {
            candidates
                .entry(coupon_id.clone())
                .or_default()
                .push(Candidate {
                    redeemed: change.redeemed,
                    data: change.data.clone(),
                    parked: None,
                });
        } else if policies_exist.contains(&change.data.policy_id) {
            park.push(Parked {
                waits_for: coupon_id.clone(),
                event_key: change.data.seq.to_string(),
                event_type: change.event_type().to_owned(),
                data: serde_json::to_string(&change.data)
                    .map_err(|err| sqlx::Error::Encode(Box::new(err)))?,
                trace_id: change.trace_id.clone(),
            });
        } else {
            outcome.hopeless_changes.push(index);
        }
    }

    // 4. Per coupon, newest wins, written by one update.
    let mut released: Vec<(String, String)> = Vec::new();
    for (coupon_id, mut list) in candidates {
        let Some(known) = stored.get_mut(&coupon_id) else {
            continue;
        };
        for candidate in &list {
            if let Some(key) = &candidate.parked {
                outcome.unparked += 1;
                released.push(key.clone());
            }
        }
        let Some(change) = rules::newest(known, &mut list, outcome) else {
            continue;
        };
        let (status, order, discount, at) = if change.redeemed {
            (
                "redeemed",
                Some(change.data.order_id.as_str()),
                Some(change.data.discount),
                Some(change.data.at.naive_utc()),
            )
        } else {
            ("issued", None, None, None)
        };
        sqlx::query(
            "UPDATE coupons SET status = ?, order_id = ?, discount = ?, redeemed_at = ?, \
             seq = ? WHERE coupon_id = ? AND seq < ?",
        )
        .bind(status)
        .bind(order)
        .bind(discount)
        .bind(at)
        .bind(change.data.seq)
        .bind(&coupon_id)
        .bind(change.data.seq)
        .execute(&mut *tx)
        .await?;
        status.clone_into(&mut known.status);
    }
    outcome.parked = park.len() as u64;
    parked::park(tx, parked::COUPON, &park).await?;
    parked::release(tx, parked::COUPON, &released).await?;
    Ok(())
}

/// Locks `policy_ids` (`FOR UPDATE`) and returns the room of those that exist.
async fn lock_policies(
    tx: &mut MySqlConnection,
    policy_ids: &HashSet<u64>,
) -> Result<HashMap<u64, Room>, sqlx::Error> {
    let mut room = HashMap::new();
    if policy_ids.is_empty() {
        return Ok(room);
    }
    let mut query = QueryBuilder::new(
        "SELECT policy_id, total_quantity, issued FROM coupon_policies WHERE policy_id IN (",
    );
    let mut list = query.separated(", ");
    for id in policy_ids {
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
    Ok(room)
}

/// Status and seq of the stored coupons among `ids`.
async fn read_coupons(
    tx: &mut MySqlConnection,
    ids: &HashSet<&str>,
) -> Result<HashMap<String, CouponRow>, sqlx::Error> {
    let mut stored = HashMap::new();
    if ids.is_empty() {
        return Ok(stored);
    }
    let mut query =
        QueryBuilder::new("SELECT coupon_id, status, seq FROM coupons WHERE coupon_id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
    for row in query.build().fetch_all(&mut *tx).await? {
        stored.insert(
            row.try_get("coupon_id")?,
            CouponRow {
                status: row.try_get("status")?,
                seq: row.try_get("seq")?,
            },
        );
    }
    Ok(stored)
}
