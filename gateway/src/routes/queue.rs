//! The waiting room's routes: join (`POST /v1/sales/{id}/queue`), its public state with the
//! commitment (`GET .../queue`), a ticket for its owner (`GET .../queue/{ticket_id}`), the
//! published draw (`GET .../queue/draw`); and the pass check of the purchase (no Redis trip).

use http::StatusCode;
use serde::Serialize;

use crate::app::App;
use crate::failure::Failure;
use crate::http::error::ApiError;
use crate::http::request::Call;
use crate::http::response::{Response, json_response};
use crate::queue::room::{self, Joined, Polled};
use crate::queue::store;
use crate::sales::store as sales_store;

/// The header a purchase of a queued sale carries its pass in.
pub const PASS_HEADER: &str = "queue-pass";

/// Whether the request carries a `Queue-Pass` that admits its caller to `sale_id` now.
/// Checked in memory (HMAC): the purchase script only gets the verdict.
pub fn pass_ok(app: &App, call: &Call<'_>, sale_id: u64) -> bool {
    let (Some(key), Some(pass)) = (
        app.queue_pass.as_ref(),
        call.req
            .headers()
            .get(PASS_HEADER)
            .and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    key.verify(
        pass,
        sale_id,
        &call.caller.user_id,
        chrono::Utc::now().timestamp_millis(),
    )
}

fn no_queue() -> ApiError {
    ApiError::NotFound("no such sale, or it has no waiting room".into())
}

fn sale_of(call: &Call<'_>) -> Result<u64, ApiError> {
    call.param.parse().map_err(|_| no_queue())
}

/// A ticket as its owner sees it.
#[derive(Serialize)]
struct TicketView {
    ticket_id: String,
    status: String,
    position: Option<i64>,
    ahead: Option<i64>,
    estimated_wait_seconds: Option<i64>,
    poll_after_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn view(app: &App, sale_id: u64, polled: &Polled) -> TicketView {
    let ticket = &polled.ticket;
    let admitted = ticket.status == "admitted";
    let expiry = ticket.pass_expiry_ms.filter(|_| admitted);
    let estimated = match polled.ahead {
        Some(ahead) if polled.rate > 0 && !polled.paused => {
            Some((ahead + polled.rate) / polled.rate)
        }
        _ => None,
    };
    TicketView {
        ticket_id: ticket.ticket_id.clone(),
        status: ticket.status.clone(),
        position: ticket.position,
        ahead: polled.ahead,
        estimated_wait_seconds: estimated,
        poll_after_ms: app.settings.queue.poll_after_ms,
        pass: expiry.and_then(|at| {
            let key = app.queue_pass.as_ref()?;
            Some(key.sign(sale_id, &ticket.user_id, &ticket.ticket_id, at))
        }),
        pass_expires_at: expiry.and_then(chrono::DateTime::from_timestamp_millis),
    }
}

/// `POST /v1/sales/{sale_id}/queue` → 201 with a new ticket, 200 with the caller's ticket
/// from before.
pub async fn join(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let sale_id = sale_of(&call)?;
    let user = call.caller.user_id.clone();
    match room::join(app, sale_id, &user).await? {
        Joined::New {
            ticket_id,
            position,
        } => Ok(json_response(
            StatusCode::CREATED,
            &TicketView {
                ticket_id,
                status: "waiting".into(),
                position,
                ahead: None,
                estimated_wait_seconds: None,
                poll_after_ms: app.settings.queue.poll_after_ms,
                pass: None,
                pass_expires_at: None,
            },
        )),
        Joined::Existing(ticket) => {
            let polled = room::poll(app, sale_id, &ticket.ticket_id, &user)
                .await?
                .unwrap_or(Polled {
                    ticket,
                    ahead: None,
                    rate: 0,
                    paused: false,
                });
            Ok(json_response(StatusCode::OK, &view(app, sale_id, &polled)))
        }
        Joined::NotFound => Err(no_queue()),
        Joined::NotOpen => Err(ApiError::conflict(
            "queue_not_open",
            "the waiting room has not opened yet",
        )),
        Joined::Closed => Err(ApiError::conflict("sale_not_active", "the sale has ended")),
    }
}

/// `GET /v1/sales/{sale_id}/queue/{ticket_id}` → the caller's ticket (404 for anyone else's).
pub async fn ticket(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let sale_id = sale_of(&call)?;
    let path = call.req.uri().path().trim_matches('/').to_owned();
    let ticket_id = path.rsplit('/').next().unwrap_or_default();
    if ticket_id.is_empty() || ticket_id.len() > 64 {
        return Err(ApiError::NotFound("no such ticket".into()));
    }
    let polled = room::poll(app, sale_id, ticket_id, &call.caller.user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such ticket".into()))?;
    Ok(json_response(StatusCode::OK, &view(app, sale_id, &polled)))
}

/// The room as anyone sees it.
#[derive(Serialize)]
struct QueueState {
    sale_id: u64,
    mode: String,
    opens_at: chrono::DateTime<chrono::Utc>,
    starts_at: chrono::DateTime<chrono::Utc>,
    commitment: String,
    drawn: bool,
    admit_per_second: u32,
    paused: bool,
    joined: Option<i64>,
    waiting: Option<i64>,
    admitted: Option<i64>,
}

/// `GET /v1/sales/{sale_id}/queue` → settings, the draw's commitment, counts.
pub async fn state(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let sale_id = sale_of(&call)?;
    let sale = sales_store::find(&app.db, sale_id)
        .await
        .map_err(Failure::Mysql)?
        .ok_or_else(no_queue)?;
    let stored = store::find(&app.db, sale_id)
        .await
        .map_err(Failure::Mysql)?
        .ok_or_else(no_queue)?;
    let live = room::counts(&app.redis, &app.scripts, app.prefix(), sale_id)
        .await
        .map_err(Failure::Redis)?;
    Ok(json_response(
        StatusCode::OK,
        &QueueState {
            sale_id,
            mode: stored.mode,
            opens_at: stored.opens_at,
            starts_at: sale.starts_at,
            commitment: stored.commitment,
            drawn: stored.drawn_at.is_some(),
            admit_per_second: stored.admit_per_second,
            paused: stored.paused,
            joined: live.as_ref().map(|c| c.joined),
            waiting: live.as_ref().map(|c| c.waiting),
            admitted: live.as_ref().map(|c| c.admitted),
        },
    ))
}

/// The published draw.
#[derive(Serialize)]
struct DrawView {
    sale_id: u64,
    procedure: &'static str,
    #[serde(flatten)]
    draw: store::PublishedDraw,
}

/// `GET /v1/sales/{sale_id}/queue/draw` → the seed and every ticket id that took part, in
/// position order (409 `queue_not_drawn` before the draw).
pub async fn draw(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let sale_id = sale_of(&call)?;
    let Some(draw) = store::published(&app.db, sale_id)
        .await
        .map_err(Failure::Mysql)?
    else {
        store::find(&app.db, sale_id)
            .await
            .map_err(Failure::Mysql)?
            .ok_or_else(no_queue)?;
        return Err(ApiError::conflict(
            "queue_not_drawn",
            "the draw happens at the sale's start",
        ));
    };
    Ok(json_response(
        StatusCode::OK,
        &DrawView {
            sale_id,
            procedure: "commitment = hex(SHA-256(seed)); tickets sorted by \
                        SHA-256(seed || ':' || ticket_id) ascending, ties by ticket id; \
                        position = index + 1",
            draw,
        },
    ))
}
