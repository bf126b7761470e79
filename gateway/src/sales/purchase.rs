//! A shopper's purchase: the quantity rule, the sold-out memory, and one `EVALSHA` of the
//! purchase script (see `admission.rs`); the outcome is counted and told as a value.

use crate::app::App;
use crate::failure::{Failure, Invalid};
use crate::keys::SaleKeys;
use crate::limits::Client;
use crate::sales::admission::{Admission, PurchaseRequest, admit};
use flashgate_config::RateClass;

/// Most units one request may ask for.
pub const MAX_UNITS_PER_PURCHASE: u32 = 1_000;

/// One shopper's purchase request, parsed.
#[derive(Debug, Clone)]
pub struct Purchase<'a> {
    /// The sale.
    pub sale_id: u64,
    /// The buyer.
    pub user_id: &'a str,
    /// Units wanted.
    pub quantity: u32,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<&'a str>,
    /// Trace id of the request, carried into the admitted event.
    pub trace_id: &'a str,
    /// The request carried a `Queue-Pass` the gateway verified for this user and sale.
    pub pass_ok: bool,
    /// The client's address, when a per-address limit needs it.
    pub client: Option<Client>,
}

/// Admits the purchase or says why not. A sale sold out moments ago is answered from memory
/// (no Redis trip) for requests without a key; a replay must reach its stored answer.
pub async fn buy(app: &App, purchase: &Purchase<'_>) -> Result<Admission, Failure> {
    if !(1..=MAX_UNITS_PER_PURCHASE).contains(&purchase.quantity) {
        return Err(Invalid::new(format!(
            "quantity: must be between 1 and {MAX_UNITS_PER_PURCHASE}"
        ))
        .into());
    }
    let sale_id = purchase.sale_id;
    if purchase.idempotency_key.is_none() && app.sold_out.is_sold_out(sale_id) {
        app.metrics.observe_sold_out_from_memory();
        return Ok(Admission::SoldOut {
            remaining: 0,
            replayed: false,
        });
    }
    let keys = SaleKeys::new(app.prefix(), sale_id);
    // Per user (and address) per sale: fields of the sale's buyers hash.
    let limits = app
        .limiter
        .arm(RateClass::Purchase, purchase.user_id, purchase.client);
    let order_id = format!("{sale_id}-{}", uuid::Uuid::now_v7().simple());
    let request = PurchaseRequest {
        keys: &keys,
        user_id: purchase.user_id,
        quantity: purchase.quantity,
        order_id: &order_id,
        trace_id: purchase.trace_id,
        idempotency_key: purchase.idempotency_key,
        outbox_max: app.settings.gateway.outbox_max_len,
        idempotency_ttl_secs: app.settings.gateway.idempotency_ttl_secs,
        pass_ok: purchase.pass_ok,
        limits: &limits,
    };
    // Past `gateway.redis_max_in_flight` calls waiting on Redis, shed now rather than queue.
    let in_flight = app.guards.redis_in_flight.enter().ok_or(Failure::Shed)?;
    let admission = admit(&app.redis, &app.scripts.purchase, &request)
        .await
        .map_err(Failure::unreachable("purchase"))?;
    drop(in_flight);
    app.metrics.observe_admission(admission.label());
    match admission {
        Admission::Admitted { remaining: 0, .. } => app.sold_out.mark(sale_id),
        // Only a fresh answer says how the sale stands now; a replayed one tells how it stood
        // when the key was first used (stock may have come back since, or a smaller quantity
        // may fit).
        Admission::SoldOut {
            remaining,
            replayed: false,
        } if remaining <= 0 => app.sold_out.mark(sale_id),
        _ => {}
    }
    Ok(admission)
}
