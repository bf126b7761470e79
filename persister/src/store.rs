//! Writing a batch of admitted orders to MySQL in one transaction, idempotently, with the
//! stock guard `sold + quantity <= total`, and the points each confirmed order earns.

use std::collections::{BTreeMap, HashMap, HashSet};

use flashgate_config::PointsSettings;
use flashgate_events::OrderAdmitted;
use sqlx::{MySqlPool, QueryBuilder, Row};

use crate::points::{self, Change, PointsOutcome};

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Orders inserted as `confirmed` (their units now count in `sales.sold`).
    pub confirmed: Vec<String>,
    /// Orders already in the database (a replay or a re-send): nothing changed for them.
    pub duplicates: Vec<String>,
    /// Orders inserted as `rejected` because the sale had no stock left in MySQL, and
    /// duplicates found already rejected (their compensation event is re-published).
    pub rejected: Vec<OrderAdmitted>,
    /// Orders whose sale does not exist in MySQL: never insertable, dead-lettered.
    pub unknown_sale: Vec<OrderAdmitted>,
    /// The points the confirmed orders earned (written in the same transaction).
    pub points: PointsOutcome,
}

/// Writes `orders` (in delivery order) in one transaction and returns what happened.
///
/// The sales rows are locked first (`FOR UPDATE`), so two consumers that somehow hold the same
/// order serialise on its sale, and the second sees the first's insert as a duplicate. Every
/// order confirmed now or before earns its points (`earn-<order>`, written once whatever the
/// replays), so a batch retried after its commit still settles the caches.
pub async fn persist_orders(
    db: &MySqlPool,
    orders: &[OrderAdmitted],
    earning: &PointsSettings,
) -> Result<BatchOutcome, sqlx::Error> {
    let mut outcome = BatchOutcome::default();
    if orders.is_empty() {
        return Ok(outcome);
    }
    let mut tx = db.begin().await?;

    // 1. Lock the sales involved, and read their counters.
    let sale_ids: Vec<u64> = orders
        .iter()
        .map(|o| o.sale_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut query = QueryBuilder::new("SELECT sale_id, total, sold FROM sales WHERE sale_id IN (");
    let mut list = query.separated(", ");
    for id in &sale_ids {
        list.push_bind(*id);
    }
    query.push(") FOR UPDATE");
    let mut stock: HashMap<u64, (u64, u64)> = HashMap::new();
    for row in query.build().fetch_all(&mut *tx).await? {
        let sale_id: u64 = row.try_get("sale_id")?;
        let total: u32 = row.try_get("total")?;
        let sold: u32 = row.try_get("sold")?;
        stock.insert(sale_id, (u64::from(total), u64::from(sold)));
    }

    // 2. Which orders are already stored (and how).
    let mut query = QueryBuilder::new("SELECT order_id, status FROM orders WHERE order_id IN (");
    let mut list = query.separated(", ");
    for order in orders {
        list.push_bind(&order.order_id);
    }
    query.push(")");
    let mut stored: HashMap<String, String> = HashMap::new();
    for row in query.build().fetch_all(&mut *tx).await? {
        stored.insert(row.try_get("order_id")?, row.try_get("status")?);
    }

    // 3. Decide each order, in delivery order.
    let mut rows: Vec<(&OrderAdmitted, &'static str)> = Vec::new();
    let mut sold_delta: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut earns: Vec<Change> = Vec::new();
    let mut earn = |order: &OrderAdmitted| {
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
        if let Some(status) = stored.get(&order.order_id) {
            outcome.duplicates.push(order.order_id.clone());
            if status == "rejected" {
                outcome.rejected.push(order.clone());
            } else {
                earn(order);
            }
            continue;
        }
        let Some((total, sold)) = stock.get_mut(&order.sale_id) else {
            outcome.unknown_sale.push(order.clone());
            continue;
        };
        let quantity = u64::from(order.quantity);
        if *sold + quantity <= *total {
            *sold += quantity;
            *sold_delta.entry(order.sale_id).or_default() += quantity;
            rows.push((order, "confirmed"));
            outcome.confirmed.push(order.order_id.clone());
            earn(order);
        } else {
            rows.push((order, "rejected"));
            outcome.rejected.push(order.clone());
        }
    }

    // 4. One multi-row insert, one update per sale touched.
    if !rows.is_empty() {
        let mut insert = QueryBuilder::new(
            "INSERT INTO orders (order_id, sale_id, user_id, quantity, unit_price, amount, \
             status, admitted_at) ",
        );
        insert.push_values(&rows, |mut row, (order, status)| {
            row.push_bind(&order.order_id)
                .push_bind(order.sale_id)
                .push_bind(&order.user_id)
                .push_bind(order.quantity)
                .push_bind(order.unit_price)
                .push_bind(order.amount)
                .push_bind(*status)
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
    outcome.points = points::write(&mut tx, &earns).await?;
    tx.commit().await?;
    Ok(outcome)
}
