//! The discounts (coupons, points) reserved on an order, which never sum past its amount: one
//! `EVALSHA` of `lua/order_discount.lua` on the hash tag of the order's sale.

use fred::error::Error;
use fred::prelude::{Pool, Value};

use crate::app::App;
use crate::keys::SaleKeys;
use crate::metrics::Dependency;
use crate::orders::status::sale_of;
use crate::scripts::{Script, int, reply_int, reply_text, unexpected_reply};

/// Largest amount the discount script compares exactly (Lua's numbers are doubles): 2^53
/// minor units. A larger order amount is counted as this much, which only tightens the cap.
pub const MAX_EXACT_AMOUNT: u64 = 1 << 53;

/// How a discount is reserved on an order (`lua/order_discount.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountMode {
    /// All of the amount or nothing (points: a shopper spends what they asked for or keeps it).
    Exact,
    /// As much of the amount as the order has left (a coupon worth more gives what is left).
    Cap,
    /// Like `Exact`, and a reservation under the same reference that another request holds
    /// becomes this request's (it succeeded with it; the other may release only its own).
    Adopt,
}

impl DiscountMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Cap => "cap",
            Self::Adopt => "adopt",
        }
    }
}

/// What a reservation of a discount came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved, now or before under the same reference.
    Reserved {
        /// What the discount may be.
        granted: u64,
        /// Everything reserved on the order now.
        total: u64,
        /// The token of the request that holds it: only that request's release frees it.
        holder: String,
    },
    /// Refused: the order's discounts would sum past its amount.
    Exceeds {
        /// Everything reserved on the order.
        total: u64,
        /// What is left of the order's amount.
        left: u64,
    },
    /// Refused: the order has ended and given its discounts back (`cancelled`, `expired`).
    Closed {
        /// How it ended.
        status: String,
    },
}

/// One discount on one order (a coupon or a use of points), counted under the hash tag of
/// the order's sale, where every discount of the order is counted.
#[derive(Debug, Clone)]
pub struct OrderDiscount {
    key: String,
    orders: String,
    order_id: String,
    reference: String,
}

impl OrderDiscount {
    /// The coupon `coupon_id` on `order_id`; `None` when the order id names no sale.
    pub fn coupon(prefix: &str, order_id: &str, coupon_id: &str) -> Option<Self> {
        Self::new(prefix, order_id, format!("cpn:{coupon_id}"))
    }

    /// The use of points `txid` on `order_id`; `None` when the order id names no sale.
    pub fn points(prefix: &str, order_id: &str, txid: &str) -> Option<Self> {
        Self::new(prefix, order_id, format!("pts:{txid}"))
    }

    fn new(prefix: &str, order_id: &str, reference: String) -> Option<Self> {
        let keys = SaleKeys::new(prefix, sale_of(order_id)?);
        Some(Self {
            key: keys.discounts,
            orders: keys.orders,
            order_id: order_id.to_owned(),
            reference,
        })
    }

    /// Reserves `amount` for the request `holder`, so that the order's discounts stay within
    /// `order_amount`. Reserving a reference that is held answers with it as it stands.
    pub async fn reserve(
        &self,
        redis: &Pool,
        script: &Script,
        holder: &str,
        amount: u64,
        order_amount: u64,
        mode: DiscountMode,
    ) -> Result<Reservation, Error> {
        let args: Vec<Value> = vec![
            "reserve".into(),
            self.order_id.as_str().into(),
            self.reference.as_str().into(),
            holder.into(),
            exact(amount),
            exact(order_amount),
            mode.as_str().into(),
        ];
        let reply: Vec<Value> = script.run(redis, self.keys(), args).await?;
        parse_reservation(&reply)
    }

    fn keys(&self) -> Vec<String> {
        vec![self.key.clone(), self.orders.clone()]
    }

    /// Gives the reservation back if `holder` holds it (`None`: whoever holds it, for a
    /// cancelled redemption or use). Returns whether something was released; a second
    /// release of the same reservation releases nothing.
    pub async fn release(
        &self,
        redis: &Pool,
        script: &Script,
        holder: Option<&str>,
    ) -> Result<bool, Error> {
        let args: Vec<Value> = vec![
            "release".into(),
            self.order_id.as_str().into(),
            self.reference.as_str().into(),
            holder.unwrap_or_default().into(),
        ];
        let reply: Vec<Value> = script.run(redis, self.keys(), args).await?;
        match reply_text(&reply, 0).as_str() {
            "released" => Ok(true),
            "not_held" => Ok(false),
            other => Err(unexpected_reply("order_discount", other)),
        }
    }
}

fn exact(amount: u64) -> Value {
    int(amount.min(MAX_EXACT_AMOUNT))
}

/// Releases a discount's reservation on its order if `holder` holds it (`None`: whoever does).
/// A failure is logged and leaves the room reserved: the order may then take less discount
/// than its amount, never more.
pub async fn release_discount(app: &App, hold: &OrderDiscount, holder: Option<&str>) {
    if let Err(err) = hold
        .release(&app.redis, &app.scripts.order_discount, holder)
        .await
    {
        app.metrics.dependency_error(Dependency::Redis);
        tracing::warn!(error = %err, "releasing a discount reservation failed; it stays reserved");
    }
}

fn amount_at(reply: &[Value], index: usize) -> u64 {
    u64::try_from(reply_int(reply, index)).unwrap_or(0)
}

fn parse_reservation(reply: &[Value]) -> Result<Reservation, Error> {
    match reply_text(reply, 0).as_str() {
        "reserved" => Ok(Reservation::Reserved {
            granted: amount_at(reply, 1),
            total: amount_at(reply, 2),
            holder: reply_text(reply, 3),
        }),
        "exceeds" => Ok(Reservation::Exceeds {
            total: amount_at(reply, 1),
            left: amount_at(reply, 2),
        }),
        "closed" => Ok(Reservation::Closed {
            status: reply_text(reply, 1),
        }),
        other => Err(unexpected_reply("order_discount", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scripts::tests::reply;
    #[test]
    fn an_order_id_names_its_sale() {
        assert_eq!(sale_of("42-0190abcd"), Some(42));
        assert_eq!(sale_of("x-1"), None);
        assert_eq!(sale_of("42"), None);
        assert!(OrderDiscount::coupon("fg", "nope", "1-c").is_none());
        let points = OrderDiscount::points("fg", "42-o", "use-1").expect("a sale");
        assert_eq!(points.key, "fg:{s:42}:discounts");
        assert_eq!(points.reference, "pts:use-1");
    }

    #[test]
    fn reservation_replies_map_to_outcomes() {
        assert_eq!(
            parse_reservation(&[
                Value::from("reserved"),
                Value::from(300),
                Value::from(900),
                Value::from("t1"),
            ])
            .unwrap(),
            Reservation::Reserved {
                granted: 300,
                total: 900,
                holder: "t1".into()
            }
        );
        assert_eq!(
            parse_reservation(&[Value::from("exceeds"), Value::from(990), Value::from(9)]).unwrap(),
            Reservation::Exceeds {
                total: 990,
                left: 9
            }
        );
        assert!(parse_reservation(&reply(&["bogus"])).is_err());
    }

    #[test]
    fn amounts_beyond_what_lua_counts_exactly_are_clamped() {
        assert_eq!(exact(7), Value::from(7));
        assert_eq!(exact(u64::MAX), Value::from(1_i64 << 53));
    }
}
