//! The events of a sale as a whole: the system of record selling its last unit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Envelope;

/// Event type of a sale whose units are all sold in MySQL (`sold == total`), announced by the
/// persister on the lifecycle topic for operators (a Slack route, say).
pub const SALE_SOLD_OUT: &str = "sale.sold_out";

/// A sale that sold its last unit in the system of record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleSoldOut {
    /// The sale (the message's key).
    pub sale_id: u64,
    /// Its units, all sold.
    pub total: u64,
    /// Units sold when it sold out (`== total`): a sale sold out again after units came back
    /// and a change of its total is another event.
    pub sold: u64,
}

impl SaleSoldOut {
    /// Wraps the event; its id (`sale.sold_out:<sale>:<sold>`) is the same whenever the same
    /// sell-out is announced again, so a consumer tells one sell-out once.
    pub fn into_envelope(self, trace_id: String, occurred_at: DateTime<Utc>) -> Envelope<Self> {
        let event_id = format!("{SALE_SOLD_OUT}:{}:{}", self.sale_id, self.sold);
        Envelope::v1(SALE_SOLD_OUT, event_id, occurred_at, trace_id, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sell_out_announced_again_keeps_its_event_id_and_names_the_sale() {
        let event = SaleSoldOut {
            sale_id: 7,
            total: 10,
            sold: 10,
        };
        let first = event.clone().into_envelope("t".into(), Utc::now());
        let again = event.into_envelope("u".into(), Utc::now());
        assert_eq!(first.event_id, "sale.sold_out:7:10");
        assert_eq!(first.event_id, again.event_id);
        assert_eq!(first.kind, SALE_SOLD_OUT);
    }
}
