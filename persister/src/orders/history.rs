//! `order_history`: one row per transition of an order (confirmed or rejected from its
//! admission, then its end), keyed by the event that made it, so a replay writes nothing twice.

use chrono::NaiveDateTime;
use sqlx::{MySqlConnection, QueryBuilder};

/// The status an admitted order had in Redis before MySQL decided it.
pub(super) const RESERVED: &str = "reserved";

/// One transition to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transition<'a> {
    /// `order.admitted:<order>`, `order.paid:<order>`, ...: unique per transition.
    pub(super) event_id: String,
    pub(super) order_id: &'a str,
    pub(super) from: &'static str,
    pub(super) to: &'static str,
    pub(super) reason: Option<String>,
    /// When it happened, by Redis's clock.
    pub(super) at: NaiveDateTime,
}

/// Records `transitions` in the caller's transaction; one already recorded stays as it is.
pub(super) async fn record(
    tx: &mut MySqlConnection,
    transitions: &[Transition<'_>],
) -> Result<(), sqlx::Error> {
    if transitions.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::new(
        "INSERT INTO order_history (event_id, order_id, from_status, to_status, reason, \
         occurred_at) ",
    );
    insert.push_values(transitions, |mut row, t| {
        row.push_bind(&t.event_id)
            .push_bind(t.order_id)
            .push_bind(t.from)
            .push_bind(t.to)
            .push_bind(&t.reason)
            .push_bind(t.at);
    });
    // Only rows decided new are passed; the key still makes a second write a no-op rather than
    // a refusal that would dead-letter the event.
    insert.push(" ON DUPLICATE KEY UPDATE event_id = event_id");
    insert.build().execute(&mut *tx).await?;
    Ok(())
}
