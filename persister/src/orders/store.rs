//! Admitted orders in MySQL, in the batch's transaction, idempotently, with the guards Redis
//! applies checked a second time under the sale's row lock: the stock (`sold + quantity <=
//! total`) and the per-user limit (the buyer's units in the sale + quantity <=
//! `per_user_limit`). An order that fails either is stored `rejected` and announced.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_config::PointsSettings;
use flashgate_events::OrderAdmitted;
use sqlx::{MySqlConnection, QueryBuilder, Row};

use crate::points::Change;

/// Why the database refused an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The sale had no stock left in MySQL.
    SoldOut,
    /// The buyer would hold more than the sale's per-user limit.
    PerUserLimit,
}

impl RejectReason {
    /// The value of `orders.reject_reason`.
    pub fn code(self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::PerUserLimit => "per_user_limit",
        }
    }

    /// The reason announced in `order.rejected`.
    pub fn message(self) -> &'static str {
        match self {
            Self::SoldOut => "sold out in the system of record",
            Self::PerUserLimit => "over the per-user limit in the system of record",
        }
    }

    /// The reason of a stored order (rows written before the column existed were sold out).
    fn from_code(code: Option<&str>) -> Self {
        match code {
            Some("per_user_limit") => Self::PerUserLimit,
            _ => Self::SoldOut,
        }
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Orders inserted as `confirmed` (their units now count in `sales.sold`).
    pub confirmed: Vec<String>,
    /// Orders already in the database (a replay or a re-send): nothing changed for them.
    pub duplicates: Vec<String>,
    /// Orders inserted as `rejected` by a guard, and duplicates found already rejected (their
    /// compensation event is published again), with the reason.
    pub rejected: Vec<(OrderAdmitted, RejectReason)>,
    /// Orders whose sale does not exist in MySQL: never insertable, dead-lettered.
    pub unknown_sale: Vec<OrderAdmitted>,
    /// The points the orders confirmed now or before earn (`earn-<order>`, written once
    /// whatever the replays, so a batch retried after its commit still settles the caches).
    pub earns: Vec<Change>,
}

/// A sale's row, as locked.
struct Sale {
    total: u64,
    sold: u64,
    per_user_limit: u64,
}

/// Statuses of orders that hold no units: rejected ones never did, cancelled and expired
/// ones gave theirs back. Every other order counts against its buyer's per-user limit.
const RELEASED: &str = "('rejected', 'cancelled', 'expired')";

/// Writes `orders` (in delivery order) in the caller's transaction and returns what happened.
///
/// The sales rows are locked first (`FOR UPDATE`), so two consumers that somehow hold the same
/// order serialise on its sale, and the second sees the first's insert as a duplicate; and
/// the buyers' units in the sale are read under that lock, as `sold` is.
pub async fn write(
    tx: &mut MySqlConnection,
    orders: &[OrderAdmitted],
    earning: &PointsSettings,
) -> Result<BatchOutcome, sqlx::Error> {
    let mut outcome = BatchOutcome::default();
    if orders.is_empty() {
        return Ok(outcome);
    }

    // 1. Lock the sales involved, and read their counters.
    let sale_ids: HashSet<u64> = orders.iter().map(|o| o.sale_id).collect();
    let mut query = QueryBuilder::new(
        "SELECT sale_id, total, sold, per_user_limit FROM sales WHERE sale_id IN (",
    );
    let mut list = query.separated(", ");
    for id in &sale_ids {
        list.push_bind(*id);
    }
    query.push(") FOR UPDATE");
    let mut sales: HashMap<u64, Sale> = HashMap::new();
    for row in query.build().fetch_all(&mut *tx).await? {
        let total: u32 = row.try_get("total")?;
        let sold: u32 = row.try_get("sold")?;
        let limit: u32 = row.try_get("per_user_limit")?;
        sales.insert(
            row.try_get("sale_id")?,
            Sale {
                total: u64::from(total),
                sold: u64::from(sold),
                per_user_limit: u64::from(limit),
            },
        );
    }

    // 2. Which orders are already stored (and how).
    let mut query =
        QueryBuilder::new("SELECT order_id, status, reject_reason FROM orders WHERE order_id IN (");
    let mut list = query.separated(", ");
    for order in orders {
        list.push_bind(&order.order_id);
    }
    query.push(")");
    let mut stored: HashMap<String, (String, Option<String>)> = HashMap::new();
    for row in query.build().fetch_all(&mut *tx).await? {
        stored.insert(
            row.try_get("order_id")?,
            (row.try_get("status")?, row.try_get("reject_reason")?),
        );
    }

    // 3. The units each buyer holds in each sale, read under the sale locks through the
    //    buyers' index: one short range per user, then only their own orders. Through
    //    `orders_by_sale` it would read the whole sale, so the index is named. (A covering
    //    (user, sale, status, quantity) index measured no faster here and costs every insert;
    //    and the status test sits in the sum, as a NOT IN in the WHERE splits every range.)
    let users: HashSet<&str> = orders.iter().map(|o| o.user_id.as_str()).collect();
    let mut held: HashMap<(u64, String), u64> = HashMap::new();
    if !sales.is_empty() {
        let mut query = QueryBuilder::new(format!(
            "SELECT user_id, sale_id, \
             CAST(SUM(IF(status IN {RELEASED}, 0, quantity)) AS UNSIGNED) AS units \
             FROM orders FORCE INDEX (orders_by_user) WHERE user_id IN ("
        ));
        let mut list = query.separated(", ");
        for user in &users {
            list.push_bind(*user);
        }
        query.push(") AND sale_id IN (");
        let mut list = query.separated(", ");
        for id in sales.keys() {
            list.push_bind(*id);
        }
        query.push(") GROUP BY user_id, sale_id");
        for row in query.build().fetch_all(&mut *tx).await? {
            held.insert(
                (row.try_get("sale_id")?, row.try_get("user_id")?),
                row.try_get("units")?,
            );
        }
    }

    // 4. Decide each order, in delivery order.
    let mut rows: Vec<(&OrderAdmitted, Option<RejectReason>)> = Vec::new();
    let mut sold_delta: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let earn = |order: &OrderAdmitted, earns: &mut Vec<Change>| {
        let points = earning.earned(order.amount);
        if points > 0 {
            earns.push(Change::Earn {
                order_id: order.order_id.clone(),
                user_id: order.user_id.clone(),
                points,
            });
        }
    };
    for order in orders {
        if !seen.insert(order.order_id.as_str()) {
            outcome.duplicates.push(order.order_id.clone());
            continue;
        }
        if let Some((status, reason)) = stored.get(&order.order_id) {
            outcome.duplicates.push(order.order_id.clone());
            if status == "rejected" {
                let reason = RejectReason::from_code(reason.as_deref());
                outcome.rejected.push((order.clone(), reason));
            } else {
                earn(order, &mut outcome.earns);
            }
            continue;
        }
        let Some(sale) = sales.get_mut(&order.sale_id) else {
            outcome.unknown_sale.push(order.clone());
            continue;
        };
        let quantity = u64::from(order.quantity);
        let units = held
            .entry((order.sale_id, order.user_id.clone()))
            .or_default();
        let refused = if *units + quantity > sale.per_user_limit {
            Some(RejectReason::PerUserLimit)
        } else if sale.sold + quantity > sale.total {
            Some(RejectReason::SoldOut)
        } else {
            None
        };
        match refused {
            None => {
                sale.sold += quantity;
                *units += quantity;
                *sold_delta.entry(order.sale_id).or_default() += quantity;
                outcome.confirmed.push(order.order_id.clone());
                earn(order, &mut outcome.earns);
            }
            Some(reason) => outcome.rejected.push((order.clone(), reason)),
        }
        rows.push((order, refused));
    }

    // 5. One multi-row insert, one update per sale touched.
    if !rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, \
             status, reject_reason, admitted_at) ",
        );
        insert.push_values(&rows, |mut row, (order, refused)| {
            row.push_bind(&order.order_id)
                .push_bind(order.sale_id)
                .push_bind(&order.user_id)
                .push_bind(order.quantity)
                .push_bind(order.unit_price)
                .push_bind(order.amount)
                .push_bind(if refused.is_some() {
                    "rejected"
                } else {
                    "confirmed"
                })
                .push_bind(refused.map(RejectReason::code))
                .push_bind(order.admitted_at.naive_utc());
        });
        insert.build().execute(&mut *tx).await?;
    }
    for (sale_id, delta) in sold_delta {
        sqlx::query("UPDATE sales SET sold = sold + ? WHERE sale_id = ?")
            .bind(delta)
            .bind(sale_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(outcome)
}
