//! The order lifecycle after admission: an open order ends once — cancelled (by its shopper
//! or a manager), expired (not paid by its `pay_by`) or paid — and a cancelled or expired one
//! gives back its units, its buyer's count, its coupon and its points.
//!
//! `close.rs` ends an order (one script on the sale's slot decides it and gives the units back);
//! `give_back.rs` gives back the coupons and points; `sweeper.rs` expires orders, finishes the
//! give-backs and removes the keys of sales whose life is over.

pub mod close;
pub mod give_back;
pub mod sweeper;

use flashgate_events::OrderEnd;

use crate::app::App;
use crate::failure::Failure;
use crate::lifecycle::close::{CloseRequest, Closing};
use crate::orders::status::sale_of;

/// Ends `order_id` as `end` asks, for `caller` (`None`: any owner), and when that gives
/// anything back runs the give-back at once (the sweeper runs it again when it is due).
pub async fn end_order(
    app: &App,
    order_id: &str,
    end: OrderEnd,
    caller: Option<&str>,
    reason: &str,
    trace_id: &str,
    idempotency_key: Option<&str>,
) -> Result<Closing, Failure> {
    let request = CloseRequest {
        order_id,
        end,
        caller,
        reason,
        trace_id,
        idempotency: idempotency_key.map(|key| (key, app.settings.gateway.idempotency_ttl_secs)),
        settle_ms: close::settle_ms(app),
    };
    let closing = close::close(&app.redis, &app.scripts.order_close, app.prefix(), &request)
        .await
        .map_err(Failure::unreachable("order end"))?;
    if let Closing::Closed(record) = &closing {
        app.metrics.observe_lifecycle(end.status());
        tracing::info!(order_id, status = record.state, reason, "order ended");
        if end.gives_back()
            && let Some(sale_id) = sale_of(order_id)
        {
            give_back::give_back_now(app, sale_id, order_id, trace_id).await;
        }
    }
    Ok(closing)
}
