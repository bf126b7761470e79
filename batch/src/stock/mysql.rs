//! The MySQL side of the stock reconciliation: each sale's total and sold with the units of its
//! confirmed and paid orders, read in ONE statement per page of sales, so an order's end
//! committing meanwhile (status and `sold`, one transaction) is wholly in the read or wholly out.

use anyhow::Context;
use sqlx::{MySqlPool, Row};

use super::judge::MysqlSale;

/// The sales and their order sums, for the sales `WHERE` selects (bound to `binds`).
async fn read(db: &MySqlPool, filter: &str, binds: &[u64]) -> anyhow::Result<Vec<MysqlSale>> {
    // Grouped along `orders_by_sale (sale_id, status)`: only confirmed and paid orders are read.
    let sql = format!(
        "SELECT s.sale_id, CAST(s.total AS SIGNED), CAST(s.sold AS SIGNED), \
           CAST(COALESCE(SUM(CASE WHEN o.status = 'confirmed' THEN o.quantity END), 0) AS SIGNED), \
           CAST(COALESCE(SUM(CASE WHEN o.status = 'paid' THEN o.quantity END), 0) AS SIGNED) \
         FROM sales s \
         LEFT JOIN orders o ON o.sale_id = s.sale_id AND o.status IN ('confirmed', 'paid') \
         WHERE {filter} GROUP BY s.sale_id ORDER BY s.sale_id"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for bind in binds {
        query = query.bind(bind);
    }
    let rows = query
        .fetch_all(db)
        .await
        .context("reading sales and their orders")?;
    rows.into_iter()
        .map(|row| {
            Ok(MysqlSale {
                sale_id: row.try_get(0)?,
                total: row.try_get(1)?,
                sold: row.try_get(2)?,
                confirmed: row.try_get(3)?,
                paid: row.try_get(4)?,
            })
        })
        .collect()
}

/// The next page: up to `limit` sales with an id above `after`, in id order.
pub async fn sales_after(
    db: &MySqlPool,
    after: u64,
    limit: usize,
) -> anyhow::Result<Vec<MysqlSale>> {
    // The page's last id first, so the grouped read is bounded by an id range.
    let last: Option<u64> = sqlx::query_scalar(
        "SELECT MAX(sale_id) FROM (SELECT sale_id FROM sales WHERE sale_id > ? \
         ORDER BY sale_id LIMIT ?) page",
    )
    .bind(after)
    .bind(limit as u64)
    .fetch_one(db)
    .await
    .context("paging through sales")?;
    match last {
        None => Ok(Vec::new()),
        Some(last) => read(db, "s.sale_id > ? AND s.sale_id <= ?", &[after, last]).await,
    }
}

/// The sales of `ids` that exist, in id order.
pub async fn sales_by_id(db: &MySqlPool, ids: &[u64]) -> anyhow::Result<Vec<MysqlSale>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        found.extend(read(db, &format!("s.sale_id IN ({placeholders})"), chunk).await?);
    }
    found.sort_by_key(|sale| sale.sale_id);
    Ok(found)
}

/// How many sales MySQL holds (for the progress line).
pub async fn count(db: &MySqlPool) -> anyhow::Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sales")
        .fetch_one(db)
        .await
        .context("counting sales")?;
    Ok(u64::try_from(count).unwrap_or(0))
}
