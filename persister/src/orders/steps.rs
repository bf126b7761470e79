//! A batch's orders in MySQL, in its one transaction, idempotently: admissions (decided by
//! [`super::rules`], written by [`super::store`]), ends ([`super::ends`], written by
//! [`super::ends_store`]) and the admissions that wait for units ([`super::waits`]).
//!
//! The batch's steps, in this order:
//! 1. the sales of every admission and end (and of the sales to revisit) are locked, in one
//!    statement (one lock order);
//! 2. ends of orders stored before this batch: a cancelled or expired order (a paid one
//!    cancelled too) gives its units back before the admissions are decided, as it did in
//!    Redis, where the unit was then sold again;
//! 3. the admissions: those parked for these sales first, in admission order, then the
//!    batch's. Those that fit are stored `confirmed`; then the ends parked for them and the
//!    batch's ends whose order was not stored at 2. When those gave units back, the admissions
//!    still refused are decided again, until nothing more fits;
//! 4. an admission still refused waits (parked, kind `stock`) unless its wait is over (or no
//!    wait is set): then it is stored `rejected`, and ends that waited for it find it final;
//! 5. an end whose order is still not stored is parked (kind `order`), and applied by the
//!    transaction that stores its admission (confirmed, or rejected after its wait). An end
//!    of a parked admission therefore waits for it too: once the admission fits it is stored,
//!    then ended, in one transaction — its units are never counted twice, and the stock guard
//!    holds at every statement.
//!
//! Both sides of every wait look under the sale's row lock, so one of them always sees the
//! other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use flashgate_config::PointsSettings;
use flashgate_events::{OrderAdmitted, OrderEnded, SaleSoldOut};
use sqlx::MySqlConnection;

use super::ends::{self, End, EndDecisions};
use super::ends_store;
use super::rules::{self, OrdersOutcome, RejectReason, Row, SaleRow};
use super::store;
use super::waits::{self, Fate, Waiting};
use crate::parked::{self, Parked};

/// What a batch brings to the orders.
#[derive(Debug, Clone, Copy)]
pub struct OrderEvents<'b> {
    /// Admitted orders, in delivery order.
    pub admitted: &'b [OrderAdmitted],
    /// Orders' ends, in delivery order.
    pub ends: &'b [End],
    /// Trace ids by order id: an admission that waits keeps its own.
    pub traces: &'b HashMap<String, String>,
    /// Sales whose parked admissions are decided though no event names them (their wait is
    /// over: see [`crate::write::BatchWriter::tick`]).
    pub revisit: &'b [u64],
}

/// Writes `events` in the caller's transaction and returns what happened. `wait` is how long
/// an admission a guard refuses waits for its units (`persister.refused_admission_wait_ms`).
///
/// The sales rows are locked first (`FOR UPDATE`), so two consumers that somehow hold the same
/// order serialise on its sale, and the second sees the first's insert as a duplicate; and
/// the buyers' units in the sale are read under that lock, as `sold` is.
pub async fn write(
    tx: &mut MySqlConnection,
    events: &OrderEvents<'_>,
    earning: &PointsSettings,
    wait: Duration,
) -> Result<OrdersOutcome, sqlx::Error> {
    let (orders, ends) = (events.admitted, events.ends);
    if orders.is_empty() && ends.is_empty() && events.revisit.is_empty() {
        return Ok(OrdersOutcome::default());
    }
    let sale_ids: HashSet<u64> = orders
        .iter()
        .map(|o| o.sale_id)
        .chain(ends.iter().map(|e| e.event.sale_id))
        .chain(events.revisit.iter().copied())
        .collect();
    let sales = store::lock_sales(tx, &sale_ids).await?;
    let sold_before: HashMap<u64, u64> = sales.iter().map(|(&id, s)| (id, s.sold)).collect();
    let mut steps = Steps {
        tx,
        sales,
        earning,
        ends,
        pending: Vec::new(),
        released_ends: Vec::new(),
        outcome: OrdersOutcome::default(),
    };

    // 2. Ends of orders stored before this batch.
    let batch_ends: Vec<&End> = ends.iter().collect();
    let first = decide_ends(steps.tx, &batch_ends, &mut steps.sales, earning).await?;
    steps.pending.clone_from(&first.absent);
    take(&mut steps.outcome, first);

    // 3. The admissions: the parked ones of these sales, then the batch's.
    let parked = waits::load(steps.tx, steps.sales.keys().copied(), wait).await?;
    let candidates: Vec<&OrderAdmitted> = parked.iter().map(|w| &w.order).chain(orders).collect();
    let refused = steps.admit(candidates).await?;

    // 4. What still does not fit: rejected once its wait is over, else parked.
    let waiting: HashMap<&str, &Waiting> = parked
        .iter()
        .map(|w| (w.order.order_id.as_str(), w))
        .collect();
    let mut rejected: Vec<Row<'_>> = Vec::new();
    let (mut park, mut announce) = (Vec::new(), Vec::new());
    let mut still_waiting: HashSet<&str> = HashSet::new();
    for (order, reason) in refused {
        let id = order.order_id.as_str();
        let parked_now = waiting.get(id);
        match waits::fate(parked_now.map(|w| w.overdue), wait.is_zero()) {
            Fate::Wait => {
                still_waiting.insert(id);
            }
            Fate::Park => {
                let trace = events.traces.get(id).map_or("", String::as_str);
                park.push(waits::parked(order, trace)?);
            }
            Fate::Reject => {
                rejected.push((order, Some(reason)));
                match parked_now {
                    Some(w) => announce.push(waits::announcement(order, reason, &w.trace_id)?),
                    // The batch's own: announced as its message's outcome (again on a replay).
                    None => steps.outcome.rejected.push((order.clone(), reason)),
                }
            }
        }
    }
    store::insert(steps.tx, &rejected, &BTreeMap::new()).await?;
    let rejected_ids: Vec<&str> = rejected.iter().map(|(o, _)| o.order_id.as_str()).collect();
    steps.settle_ends(&rejected_ids).await?;
    let decided: Vec<(String, String)> = parked
        .iter()
        .filter(|w| !still_waiting.contains(w.order.order_id.as_str()))
        .map(|w| waits::key(&w.order))
        .collect();
    let outcome = &mut steps.outcome;
    let confirmed: HashSet<&str> = outcome.confirmed.iter().map(String::as_str).collect();
    outcome.admissions_unparked = parked
        .iter()
        .filter(|w| confirmed.contains(w.order.order_id.as_str()))
        .count() as u64;
    outcome.admissions_parked = park.len() as u64;
    outcome.admissions_rejected_after_wait = announce.len() as u64;
    parked::park(steps.tx, parked::STOCK, &park).await?;
    parked::release(steps.tx, parked::STOCK, &decided).await?;
    parked::park(steps.tx, parked::ANNOUNCE, &announce).await?;

    // 5. Ends whose order is still not stored wait for it, unless neither it nor its sale
    // exists.
    let mut park_ends: Vec<Parked> = Vec::new();
    for &at in &steps.pending {
        let end = &ends[at];
        if steps.sales.contains_key(&end.event.sale_id) {
            park_ends.push(parked_end(end)?);
        } else {
            steps.outcome.hopeless_ends.push(at);
        }
    }
    steps.outcome.ends_unparked = steps.released_ends.len() as u64;
    steps.outcome.ends_parked = park_ends.len() as u64;
    parked::park(steps.tx, parked::ORDER, &park_ends).await?;
    parked::release(steps.tx, parked::ORDER, &steps.released_ends).await?;
    steps.outcome.sold_out = sold_out(events, &sold_before, &steps.sales, &steps.outcome);
    Ok(steps.outcome)
}

/// The sales to announce sold out ([`rules::sold_out`]), each with the trace of one of the
/// batch's orders of it (empty when only parked ones sold it out).
fn sold_out(
    events: &OrderEvents<'_>,
    before: &HashMap<u64, u64>,
    after: &HashMap<u64, SaleRow>,
    outcome: &OrdersOutcome,
) -> Vec<(SaleSoldOut, String)> {
    let duplicates: HashSet<&str> = outcome.duplicates.iter().map(String::as_str).collect();
    let replayed: HashSet<u64> = events
        .admitted
        .iter()
        .filter(|o| duplicates.contains(o.order_id.as_str()))
        .map(|o| o.sale_id)
        .collect();
    rules::sold_out(before, after, &replayed)
        .into_iter()
        .map(|event| {
            let trace = events
                .admitted
                .iter()
                .rev()
                .filter(|o| o.sale_id == event.sale_id)
                .find_map(|o| events.traces.get(&o.order_id))
                .cloned()
                .unwrap_or_default();
            (event, trace)
        })
        .collect()
}

/// The state the steps share.
struct Steps<'t, 'b> {
    /// The batch's transaction.
    tx: &'t mut MySqlConnection,
    /// The locked sales, moved along as orders are confirmed and ended.
    sales: HashMap<u64, SaleRow>,
    /// What a paid order earns.
    earning: &'b PointsSettings,
    /// The batch's ends.
    ends: &'b [End],
    /// Positions, in `ends`, of those whose order is not stored yet.
    pending: Vec<usize>,
    /// Parked ends taken back and decided (deleted at the end).
    released_ends: Vec<(String, String)>,
    /// What happened.
    outcome: OrdersOutcome,
}

impl<'b> Steps<'_, 'b> {
    /// Decides `candidates` (in that order) and stores those that fit, then the ends waiting
    /// for them; while those ends give units back, decides the refused ones again. Returns the
    /// admissions still refused, in the order decided.
    async fn admit<'o>(
        &mut self,
        candidates: Vec<&'o OrderAdmitted>,
    ) -> Result<Vec<(&'o OrderAdmitted, RejectReason)>, sqlx::Error> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let stored = store::stored(self.tx, &candidates).await?;
        let none = HashMap::new();
        let mut round = candidates;
        let mut first = true;
        loop {
            let mut held = store::units_held(self.tx, &round, &self.sales).await?;
            // Later rounds decide only what was refused: nothing of it is stored.
            let known = if first { &stored } else { &none };
            let decided = rules::decide(&round, known, &mut self.sales, &mut held);
            store::insert(self.tx, &decided.rows, &decided.sold_delta).await?;
            let inserted: Vec<&str> = decided
                .rows
                .iter()
                .map(|(o, _)| o.order_id.as_str())
                .collect();
            let outcome = decided.outcome;
            self.outcome.confirmed.extend(outcome.confirmed);
            self.outcome.duplicates.extend(outcome.duplicates);
            self.outcome.rejected.extend(outcome.rejected);
            self.outcome.unknown_sale.extend(outcome.unknown_sale);
            let gave_back = self.settle_ends(&inserted).await?;
            if !gave_back || decided.refused.is_empty() {
                return Ok(decided.refused);
            }
            round = decided.refused.iter().map(|(o, _)| *o).collect();
            first = false;
        }
    }

    /// Decides the ends parked for the orders `inserted` now, then the batch's ends whose
    /// order was not stored; returns whether any gave units back.
    async fn settle_ends(&mut self, inserted: &[&str]) -> Result<bool, sqlx::Error> {
        if inserted.is_empty() {
            return Ok(false); // no order appeared: the waiting ends still wait
        }
        let (unparked, keys) = load_parked(self.tx, inserted).await?;
        self.released_ends.extend(keys);
        let ends: &'b [End] = self.ends;
        let mut list: Vec<&End> = unparked.iter().collect();
        list.extend(self.pending.iter().map(|&at| &ends[at]));
        let decided = decide_ends(self.tx, &list, &mut self.sales, self.earning).await?;
        // Parked ends were loaded for orders stored now: only the batch's own are absent.
        self.pending = decided
            .absent
            .iter()
            .filter_map(|&position| {
                let at = position.checked_sub(unparked.len())?;
                self.pending.get(at).copied()
            })
            .collect();
        let gave_back = !decided.sold_back.is_empty();
        take(&mut self.outcome, decided);
        Ok(gave_back)
    }
}

/// Locks and reads the orders `ends` name, decides the ends and writes what they store.
async fn decide_ends<'e>(
    tx: &mut MySqlConnection,
    ends: &[&'e End],
    sales: &mut HashMap<u64, SaleRow>,
    earning: &PointsSettings,
) -> Result<EndDecisions<'e>, sqlx::Error> {
    if ends.is_empty() {
        return Ok(EndDecisions::default());
    }
    let ids: HashSet<&str> = ends.iter().map(|e| e.event.order_id.as_str()).collect();
    let mut rows = ends_store::lock_orders(tx, &ids).await?;
    let decided = ends::decide(ends, &mut rows, earning);
    ends_store::apply(tx, &decided, sales).await?;
    Ok(decided)
}

/// Adds what `decided` did to `outcome`.
fn take(outcome: &mut OrdersOutcome, decided: EndDecisions<'_>) {
    let owned = |ends: Vec<&End>| ends.into_iter().cloned().collect::<Vec<_>>();
    // A paid order cancelled in this decision was paid in it first, or before it.
    outcome.ended.extend(owned(decided.applied));
    outcome.ended.extend(owned(decided.paid_cancelled));
    outcome.ends_found.extend(owned(decided.found));
    outcome.ends_stale.extend(owned(decided.stale));
    outcome.earns.extend(decided.earns);
}

/// The ends parked for the orders `inserted` now, oldest first, and their keys (to release).
async fn load_parked(
    tx: &mut MySqlConnection,
    inserted: &[&str],
) -> Result<(Vec<End>, Vec<(String, String)>), sqlx::Error> {
    let mut ends = Vec::new();
    let mut keys = Vec::new();
    for parked in parked::load(tx, parked::ORDER, inserted).await? {
        match serde_json::from_str::<OrderEnded>(&parked.data) {
            Ok(event) => {
                ends.push(End {
                    event,
                    trace_id: parked.trace_id,
                });
                keys.push((parked.waits_for, parked.event_key));
            }
            // Left where it is, counted in the parked gauge, for an operator to look at.
            Err(err) => tracing::error!(
                order_id = parked.waits_for,
                event = parked.event_key,
                error = %err,
                "a parked order end cannot be read back"
            ),
        }
    }
    Ok((ends, keys))
}

/// `end` as a parked event: it waits for its order; an order ends once per type, so the type
/// tells its events apart.
fn parked_end(end: &End) -> Result<Parked, sqlx::Error> {
    Ok(Parked {
        waits_for: end.event.order_id.clone(),
        event_key: end.event.end.event_type().to_owned(),
        event_type: end.event.end.event_type().to_owned(),
        data: serde_json::to_string(&end.event)
            .map_err(|err| sqlx::Error::Encode(Box::new(err)))?,
        trace_id: end.trace_id.clone(),
    })
}
