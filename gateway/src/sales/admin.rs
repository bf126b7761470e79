//! What managers do with sales: create one (MySQL, then Redis), read it with its live
//! counters, list them, pause or resume one.

use crate::app::App;
use crate::failure::{Failure, Invalid};
use crate::queue;
use crate::queue::spec::{QueuePatch, QueueView};
use crate::sales::sale::{NewSale, Sale, SaleView};
use crate::sales::{state, store};

/// Stores the sale in MySQL and loads it into Redis; the sale with its counters.
pub async fn create(app: &App, new: &NewSale) -> Result<SaleView, Failure> {
    new.validate()?;
    let sale = store::insert(&app.db, new).await.map_err(Failure::Mysql)?;
    state::load_into_redis(&app.redis, &app.db, &app.scripts, app.prefix(), &sale)
        .await
        .map_err(|err| {
            Failure::Redis(err.context(
                "sale stored in MySQL but not loaded into Redis; POST /v1/admin/sales/restore",
            ))
        })?;
    tracing::info!(sale_id = sale.sale_id, stock = sale.stock, "sale created");
    let queue = queue_view(app, sale.sale_id).await?;
    Ok(SaleView {
        remaining: Some(i64::from(sale.stock)),
        admitted: Some(0),
        persisted: sale.sold,
        sale,
        queue,
    })
}

/// The sale with its live counters from Redis, if there is such a sale.
pub async fn view(app: &App, sale_id: u64) -> Result<Option<SaleView>, Failure> {
    let find = async { store::find(&app.db, sale_id).await.map_err(Failure::Mysql) };
    let Some(sale) = app.guards.mysql.call(find).await? else {
        return Ok(None);
    };
    let (remaining, admitted) =
        state::live_counters(&app.redis, &app.scripts, app.prefix(), sale_id)
            .await
            .map_err(Failure::Redis)?;
    let queue = queue_view(app, sale_id).await?;
    Ok(Some(SaleView {
        persisted: sale.sold,
        sale,
        remaining,
        admitted,
        queue,
    }))
}

/// The sale's waiting room with its live counts, if it has one.
async fn queue_view(app: &App, sale_id: u64) -> Result<Option<QueueView>, Failure> {
    let Some(stored) = queue::store::find(&app.db, sale_id)
        .await
        .map_err(Failure::Mysql)?
    else {
        return Ok(None);
    };
    let live = queue::room::counts(&app.redis, &app.scripts, app.prefix(), sale_id)
        .await
        .map_err(Failure::Redis)?;
    Ok(Some(QueueView { stored, live }))
}

/// Changes the sale's waiting room (rate, pause), in MySQL and in Redis; the sale as it is
/// now, or `None` when there is no such sale. A sale without a room: 400.
pub async fn change_queue(
    app: &App,
    sale_id: u64,
    patch: &QueuePatch,
) -> Result<Option<SaleView>, Failure> {
    patch.validate()?;
    if !queue::store::update(&app.db, sale_id, patch)
        .await
        .map_err(Failure::Mysql)?
    {
        if store::find(&app.db, sale_id)
            .await
            .map_err(Failure::Mysql)?
            .is_none()
        {
            return Ok(None);
        }
        return Err(Invalid::new("queue: this sale has no waiting room").into());
    }
    queue::room::apply(&app.redis, app.prefix(), sale_id, patch)
        .await
        .map_err(Failure::Redis)?;
    tracing::info!(sale_id, ?patch, "sale queue changed");
    view(app, sale_id).await
}

/// Up to `limit` sales with ids below `before`, newest first.
pub async fn list(app: &App, before: Option<u64>, limit: u32) -> Result<Vec<Sale>, Failure> {
    app.guards
        .mysql
        .call(async {
            store::list(&app.db, before, limit)
                .await
                .map_err(Failure::Mysql)
        })
        .await
}

/// Pauses (`paused`) or resumes (`active`) the sale, in MySQL and in Redis; the sale as it is
/// now, or `None` when there is no such sale.
pub async fn set_status(
    app: &App,
    sale_id: u64,
    status: &str,
) -> Result<Option<SaleView>, Failure> {
    if !matches!(status, "active" | "paused") {
        return Err(Invalid::new("status: must be \"active\" or \"paused\"").into());
    }
    let found = state::set_status(&app.redis, &app.db, app.prefix(), sale_id, status)
        .await
        .map_err(Failure::Internal)?;
    if !found {
        return Ok(None);
    }
    tracing::info!(sale_id, status, "sale status changed");
    view(app, sale_id).await
}
