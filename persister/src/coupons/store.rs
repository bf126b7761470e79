//! Coupon events in MySQL, in the batch's transaction, idempotently: issued coupons with the
//! guards `issued + 1 <= total_quantity` and one row per (policy, user, claim_no), and
//! redemption changes applied only when newer (`seq`) than what is stored.
//!
//! A change can reach the persister before its coupon (several relays, and a relay's re-send
//! after a crash, can reorder one coupon's events). It then waits in `parked_events` and is
//! applied by the transaction that inserts the coupon. Both sides hold the policy's row lock
//! when they look, so one of them always sees the other.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_events::{
    COUPON_REDEEMED, COUPON_REDEMPTION_CANCELLED, CouponIssued, CouponRedemption,
};
use sqlx::{MySqlConnection, QueryBuilder, Row};

use crate::parked::{self, Parked};

/// A coupon's redemption, or the undoing of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Redeemed (true), or its redemption cancelled.
    pub redeemed: bool,
    /// The change.
    pub data: CouponRedemption,
    /// The trace id it arrived with.
    pub trace_id: String,
}

impl Change {
    fn event_type(&self) -> &'static str {
        if self.redeemed {
            COUPON_REDEEMED
        } else {
            COUPON_REDEMPTION_CANCELLED
        }
    }
}

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
    /// Changes (indexes into the batch's changes) whose coupon is unknown and whose policy
    /// does not exist: never applicable.
    pub hopeless_changes: Vec<usize>,
    /// Redemption changes applied.
    pub changed: u64,
    /// Redemption changes older than what is stored (replays): ignored.
    pub stale: u64,
    /// Changes parked now to wait for their coupon.
    pub parked: u64,
    /// Parked changes decided now that their coupon arrived.
    pub unparked: u64,
}

/// What is stored of one coupon.
struct Stored {
    status: String,
    seq: u64,
}

/// A change to decide: from this batch, or parked by an earlier one.
struct Candidate {
    redeemed: bool,
    data: CouponRedemption,
    parked: Option<(String, String)>,
}

/// Writes `issued` and then `changes` (each in delivery order) in the caller's transaction.
pub async fn write(
    tx: &mut MySqlConnection,
    issued: &[CouponIssued],
    changes: &[Change],
) -> Result<CouponOutcome, sqlx::Error> {
    let mut outcome = CouponOutcome::default();
    if issued.is_empty() && changes.is_empty() {
        return Ok(outcome);
    }

    // 1. Lock the policies of new coupons and read their counters.
    let policy_ids: HashSet<u64> = issued.iter().map(|c| c.policy_id).collect();
    let mut room = lock_policies(tx, &policy_ids).await?;
    let mut policies_exist: HashSet<u64> = room.keys().copied().collect();

    // 2. What is stored of these coupons, and which claim numbers their users hold.
    let ids: HashSet<&str> = issued
        .iter()
        .map(|c| c.coupon_id.as_str())
        .chain(changes.iter().map(|c| c.data.coupon_id.as_str()))
        .collect();
    let mut stored = read_coupons(tx, &ids).await?;
    let mut taken: HashSet<(u64, String, u32)> = HashSet::new();
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
        if let Some(known) = stored.get(&coupon.coupon_id) {
            outcome.duplicates.push(coupon.coupon_id.clone());
            if known.status == "rejected" {
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
        stored.insert(
            coupon.coupon_id.clone(),
            Stored {
                status: status.to_owned(),
                seq: 1,
            },
        );
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

    // 4. Changes of coupons not stored: look again under their policies' locks (a batch
    //    inserting the coupon holds that lock until it commits), so that none is parked
    //    while its coupon is being stored.
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

    // 5. Changes parked by earlier batches for the coupons inserted now.
    let inserted: Vec<&str> = rows.iter().map(|(c, _)| c.coupon_id.as_str()).collect();
    let mut candidates: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for parked in parked::load(tx, parked::COUPON, &inserted).await? {
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

    // 6. This batch's changes: of a stored coupon, decided now; otherwise parked (or, when
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

    // 7. Per coupon, newest wins: the changes newer than the stored seq are applied in seq
    //    order, which leaves the newest one's state, written by one update.
    let mut released: Vec<(String, String)> = Vec::new();
    for (coupon_id, mut list) in candidates {
        let Some(known) = stored.get_mut(&coupon_id) else {
            continue;
        };
        list.sort_by_key(|c| c.data.seq);
        let mut newest: Option<&Candidate> = None;
        for candidate in &list {
            if known.status == "rejected" || candidate.data.seq <= known.seq {
                outcome.stale += 1;
            } else {
                known.seq = candidate.data.seq;
                outcome.changed += 1;
                newest = Some(candidate);
            }
            if let Some(key) = &candidate.parked {
                outcome.unparked += 1;
                released.push(key.clone());
            }
        }
        let Some(change) = newest else { continue };
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
    Ok(outcome)
}

/// Locks `policy_ids` (`FOR UPDATE`) and returns (total, issued) of those that exist.
async fn lock_policies(
    tx: &mut MySqlConnection,
    policy_ids: &HashSet<u64>,
) -> Result<HashMap<u64, (u64, u64)>, sqlx::Error> {
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
) -> Result<HashMap<String, Stored>, sqlx::Error> {
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
            Stored {
                status: row.try_get("status")?,
                seq: row.try_get("seq")?,
            },
        );
    }
    Ok(stored)
}
