//! Judging one sale: its Redis counters against what MySQL says they must be once everything
//! admitted and ended has been persisted (pure logic, no I/O).
//!
//! After the drain: Redis `stock` = `total - sold`, `held` = units of `confirmed` orders,
//! `paid` = units of `paid` orders, so `stock + held + paid = total`; and in MySQL
//! `sold` = units of `confirmed` + `paid` orders.

use serde::Serialize;

/// One look at a sale: both sides as read, and the verdict.
#[derive(Debug, Clone)]
pub struct Look {
    /// MySQL's side.
    pub mysql: MysqlSale,
    /// Redis's side.
    pub redis: RedisSale,
    /// What they say together.
    pub judgement: Judgement,
}

/// One sale as MySQL holds it, read in one statement (one snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MysqlSale {
    /// The sale.
    pub sale_id: u64,
    /// `sales.total`: units offered.
    pub total: i64,
    /// `sales.sold`: units of persisted, non-rejected, not given back orders.
    pub sold: i64,
    /// Units of `confirmed` orders (they hold units until paid, cancelled or expired).
    pub confirmed: i64,
    /// Units of `paid` orders.
    pub paid: i64,
}

/// A counter as Redis stores it, kept as the exact text read, so a repair can ask "is it still
/// exactly this?". `None`: the key or field is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored(pub Option<String>);

impl Stored {
    /// The counter's value: absent counts as 0 (a sale loaded before `held`/`paid` existed,
    /// or nothing held yet); `None` when the text is not an integer.
    pub fn value(&self) -> Option<i64> {
        match &self.0 {
            None => Some(0),
            Some(text) => text.parse().ok(),
        }
    }

    /// The text to compare with in the repair script (`''` for absent).
    pub fn raw(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

/// One sale's counters as Redis holds them, read in one script call (one instant).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisSale {
    /// Whether the `sale` hash exists: a sale cleaned up after it ended, or never loaded,
    /// has none.
    pub loaded: bool,
    /// `total` of the sale hash.
    pub total: Stored,
    /// The `stock` string: units left.
    pub stock: Stored,
    /// `held` of the sale hash: units in open orders.
    pub held: Stored,
    /// `paid` of the sale hash: units in paid orders.
    pub paid: Stored,
    /// Entries of the sale's outbox not yet relayed to Kafka.
    pub outbox: u64,
}

impl RedisSale {
    /// `stock + held + paid`, when all three are readable.
    pub fn sum(&self) -> Option<i64> {
        Some(self.stock.value()? + self.held.value()? + self.paid.value()?)
    }
}

/// The three counters a repair sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Units left.
    pub stock: i64,
    /// Units in open orders.
    pub held: i64,
    /// Units in paid orders.
    pub paid: i64,
}

/// Which counter differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    /// Redis `total` differs from `sales.total`.
    Total,
    /// Redis `stock` differs from `total - sold`.
    Stock,
    /// Redis `held` differs from the units of `confirmed` orders.
    Held,
    /// Redis `paid` differs from the units of `paid` orders.
    Paid,
}

/// One counter that differs from what MySQL says it must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterDrift {
    /// Which one.
    pub counter: Counter,
    /// What Redis holds (absent reads as 0; `None`: not an integer, or an absent total).
    pub found: Option<i64>,
    /// What it must be.
    pub expected: i64,
}

/// Why a drifting sale cannot be repaired by setting its Redis counters from MySQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unfixable {
    /// MySQL disagrees with itself: `sales.sold` is not the units of its confirmed and paid
    /// orders, so "the MySQL value" is not one number. A person must look.
    MysqlSold {
        /// `sales.sold`.
        sold: i64,
        /// Units of confirmed + paid orders.
        orders: i64,
    },
    /// Redis holds the sale with another (or no) total than MySQL's: it was loaded from other
    /// data; no setting of stock, held and paid can satisfy both.
    Total {
        /// Redis `total` (`None`: absent or not an integer).
        redis: Option<i64>,
        /// `sales.total`.
        mysql: i64,
    },
    /// The open orders Redis holds (`holds`) hold other units than MySQL's confirmed orders:
    /// each will end through Redis and give back or move its own units, so a `held` set from
    /// MySQL would go wrong as they end. An order MySQL rejected that Redis holds until its
    /// pay_by (it then expires and agrees again), or an order Redis lost.
    OpenOrders {
        /// Units of Redis's open orders (-1: one has no record).
        redis: i64,
        /// Units of MySQL's confirmed orders.
        mysql: i64,
    },
}

/// What differs in a drifting sale, and what a repair would set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Every Redis counter that differs from its MySQL value.
    pub counters: Vec<CounterDrift>,
    /// The values to set (`stock = total - sold`, `held`, `paid` from the orders), or why no
    /// values can be set.
    pub repair: Result<Counters, Unfixable>,
}

/// The verdict on one look at one sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// The sale is not in Redis (cleaned up after it ended, or never loaded): nothing to
    /// compare, not drift.
    NotInRedis,
    /// Its outbox holds events not yet relayed: MySQL cannot agree yet, so it is not judged.
    InFlight {
        /// Entries in the outbox.
        outbox: u64,
    },
    /// Redis and MySQL agree.
    Clean,
    /// They disagree.
    Drift(Drift),
}

/// Judges one look at a sale.
pub fn judge(mysql: &MysqlSale, redis: &RedisSale) -> Judgement {
    if !redis.loaded {
        return Judgement::NotInRedis;
    }
    if redis.outbox > 0 {
        return Judgement::InFlight {
            outbox: redis.outbox,
        };
    }
    let expected = Counters {
        stock: mysql.total - mysql.sold,
        held: mysql.confirmed,
        paid: mysql.paid,
    };
    // An absent total is not 0: a loaded sale always has one.
    let total = redis.total.0.as_ref().and_then(|t| t.parse::<i64>().ok());
    let mut counters = Vec::new();
    for (counter, found, expected) in [
        (Counter::Total, total, mysql.total),
        (Counter::Stock, redis.stock.value(), expected.stock),
        (Counter::Held, redis.held.value(), expected.held),
        (Counter::Paid, redis.paid.value(), expected.paid),
    ] {
        if found != Some(expected) {
            counters.push(CounterDrift {
                counter,
                found,
                expected,
            });
        }
    }
    let orders = mysql.confirmed + mysql.paid;
    if counters.is_empty() && mysql.sold == orders {
        return Judgement::Clean;
    }
    let repair = if mysql.sold != orders {
        Err(Unfixable::MysqlSold {
            sold: mysql.sold,
            orders,
        })
    } else if total != Some(mysql.total) {
        Err(Unfixable::Total {
            redis: total,
            mysql: mysql.total,
        })
    } else {
        Ok(expected)
    };
    Judgement::Drift(Drift { counters, repair })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mysql(total: i64, sold: i64, confirmed: i64, paid: i64) -> MysqlSale {
        MysqlSale {
            sale_id: 7,
            total,
            sold,
            confirmed,
            paid,
        }
    }

    fn stored(value: Option<&str>) -> Stored {
        Stored(value.map(str::to_owned))
    }

    fn redis(total: &str, stock: &str, held: Option<&str>, paid: Option<&str>) -> RedisSale {
        RedisSale {
            loaded: true,
            total: stored(Some(total)),
            stock: stored(Some(stock)),
            held: stored(held),
            paid: stored(paid),
            outbox: 0,
        }
    }

    #[test]
    fn counters_that_match_mysql_after_the_drain_are_clean() {
        let judged = judge(
            &mysql(100, 60, 20, 40),
            &redis("100", "40", Some("20"), Some("40")),
        );
        assert_eq!(judged, Judgement::Clean);
    }

    #[test]
    fn absent_held_and_paid_count_as_zero() {
        let judged = judge(&mysql(10, 0, 0, 0), &redis("10", "10", None, None));
        assert_eq!(judged, Judgement::Clean);
    }

    #[test]
    fn each_differing_counter_is_named_with_what_it_must_be() {
        let judged = judge(
            &mysql(100, 60, 20, 40),
            &redis("100", "41", Some("19"), Some("x")),
        );
        let Judgement::Drift(drift) = judged else {
            panic!("{judged:?}");
        };
        let named: Vec<_> = drift
            .counters
            .iter()
            .map(|d| (d.counter, d.found, d.expected))
            .collect();
        assert_eq!(
            named,
            [
                (Counter::Stock, Some(41), 40),
                (Counter::Held, Some(19), 20),
                (Counter::Paid, None, 40)
            ]
        );
        assert_eq!(
            drift.repair,
            Ok(Counters {
                stock: 40,
                held: 20,
                paid: 40
            })
        );
    }

    #[test]
    fn a_sale_not_in_redis_is_not_judged_and_one_with_events_in_flight_waits() {
        let mut absent = redis("10", "10", None, None);
        absent.loaded = false;
        assert_eq!(judge(&mysql(10, 3, 3, 0), &absent), Judgement::NotInRedis);
        let mut busy = redis("10", "7", Some("3"), None);
        busy.outbox = 2;
        assert_eq!(
            judge(&mysql(10, 0, 0, 0), &busy),
            Judgement::InFlight { outbox: 2 }
        );
    }

    #[test]
    fn mysql_disagreeing_with_itself_or_another_total_is_drift_no_setting_can_repair() {
        let judged = judge(&mysql(10, 5, 3, 1), &redis("10", "5", Some("3"), Some("1")));
        let Judgement::Drift(drift) = judged else {
            panic!("{judged:?}");
        };
        assert!(drift.counters.is_empty());
        assert_eq!(
            drift.repair,
            Err(Unfixable::MysqlSold { sold: 5, orders: 4 })
        );
        let judged = judge(&mysql(10, 0, 0, 0), &redis("12", "10", None, None));
        let Judgement::Drift(drift) = judged else {
            panic!("{judged:?}");
        };
        assert_eq!(
            drift.repair,
            Err(Unfixable::Total {
                redis: Some(12),
                mysql: 10
            })
        );
    }
}
