//! The manager API for sales: create, read with live counters, list, restore into Redis.

use http::StatusCode;
use serde::Serialize;
use serde_json::json;

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::request::{Call, next_page, page_query, read_json};
use crate::http::response::{Response, json_response};
use crate::metrics::Dependency;
use crate::sales::sale::{NewSale, Sale, SaleView};
use crate::sales::{state, store};

/// Default and largest page of `GET /v1/admin/sales`.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

fn mysql_error(app: &App, err: anyhow::Error) -> ApiError {
    app.metrics.dependency_error(Dependency::Mysql);
    ApiError::Internal(err)
}

/// `POST /v1/admin/sales` → 201 with the sale.
pub async fn create(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call { req, .. } = call;
    let new: NewSale = read_json(req, app.settings.gateway.body_limit_bytes).await?;
    new.validate()?;
    let sale = store::insert(&app.db, &new)
        .await
        .map_err(|e| mysql_error(app, e))?;
    state::load_into_redis(
        &app.redis,
        &app.db,
        &app.scripts.load_sale,
        app.prefix(),
        &sale,
    )
    .await
    .map_err(|err| {
        app.metrics.dependency_error(Dependency::Redis);
        ApiError::Internal(err.context(
            "sale stored in MySQL but not loaded into Redis; POST /v1/admin/sales/restore",
        ))
    })?;
    tracing::info!(sale_id = sale.sale_id, stock = sale.stock, "sale created");
    let view = SaleView {
        remaining: Some(i64::from(sale.stock)),
        admitted: Some(0),
        persisted: sale.sold,
        sale,
    };
    Ok(json_response(StatusCode::CREATED, &view))
}

/// `GET /v1/admin/sales/{sale_id}` → the sale with `remaining` and `admitted`.
pub async fn get(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call { param: sale_id, .. } = call;
    let sale_id: u64 = sale_id
        .parse()
        .map_err(|_| ApiError::NotFound("no such sale".into()))?;
    get_view(app, sale_id).await
}

/// The sale with its live counters, or 404.
async fn get_view(app: &App, sale_id: u64) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound("no such sale".into());
    let sale = store::find(&app.db, sale_id)
        .await
        .map_err(|e| mysql_error(app, e))?
        .ok_or_else(not_found)?;
    let (remaining, admitted) = state::live_counters(&app.redis, app.prefix(), sale_id)
        .await
        .map_err(|err| {
            app.metrics.dependency_error(Dependency::Redis);
            ApiError::Internal(err)
        })?;
    Ok(json_response(
        StatusCode::OK,
        &SaleView {
            persisted: sale.sold,
            sale,
            remaining,
            admitted,
        },
    ))
}

#[derive(Serialize)]
struct Page {
    sales: Vec<Sale>,
    next_cursor: Option<String>,
}

/// `GET /v1/admin/sales?limit=N&cursor=C` → newest first, keyset pagination.
pub async fn list(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call { req, .. } = call;
    let (limit, cursor) = page_query(req.uri().query(), DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = cursor
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::invalid("cursor: not a cursor from this API"))
        })
        .transpose()?;
    let mut page = store::list(&app.db, cursor, limit + 1)
        .await
        .map_err(|e| mysql_error(app, e))?;
    let next_cursor = next_page(&mut page, limit, |s| Some(s.sale_id.to_string()));
    Ok(json_response(
        StatusCode::OK,
        &Page {
            sales: page,
            next_cursor,
        },
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: String,
}

/// `PATCH /v1/admin/sales/{sale_id}` `{"status": "paused" | "active"}` → the sale.
pub async fn patch(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let Call {
        req,
        param: sale_id,
        ..
    } = call;
    let not_found = || ApiError::NotFound("no such sale".into());
    let sale_id: u64 = sale_id.parse().map_err(|_| not_found())?;
    let change: StatusChange = read_json(req, app.settings.gateway.body_limit_bytes).await?;
    if !matches!(change.status.as_str(), "active" | "paused") {
        return Err(ApiError::invalid(
            "status: must be \"active\" or \"paused\"",
        ));
    }
    let found = state::set_status(&app.redis, &app.db, app.prefix(), sale_id, &change.status)
        .await
        .map_err(ApiError::Internal)?;
    if !found {
        return Err(not_found());
    }
    tracing::info!(sale_id, status = %change.status, "sale status changed");
    get_view(app, sale_id).await
}

/// `POST /v1/admin/sales/restore` → loads every open sale and live coupon policy that Redis
/// lacks from MySQL.
pub async fn restore(app: &App, _call: Call<'_>) -> Result<Response, ApiError> {
    let (restored, restored_policies) = crate::restore::restore(app)
        .await
        .map_err(ApiError::Internal)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "restored": restored, "restored_policies": restored_policies }),
    ))
}
