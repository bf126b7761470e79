//! Rate limits (`[[rate_limits]]`): per route class and per caller (user or client address), a
//! rate and a burst, judged by GCRA in Redis so that they hold across every gateway. The
//! trusted proxies whose headers name the client are in `proxies.rs`.

use serde::Deserialize;

use crate::error::Invalid;

/// Which routes a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateClass {
    /// `POST /v1/sales/{id}/purchases`, counted per sale (the key shares the sale's hash tag).
    Purchase,
    /// `POST /v1/coupon-policies/{id}/claims`, counted per policy.
    Claim,
    /// Every other route of a signed-in shopper: reads, and the shopper's other writes
    /// (cancel, pay, redeem, points, the waiting room, logout), which are rare per user.
    Read,
    /// Every route of managers and operators (`/v1/admin/...`).
    Admin,
}

impl RateClass {
    /// Every class, in the order of [`RateClass::index`].
    pub const ALL: [Self; 4] = [Self::Purchase, Self::Claim, Self::Read, Self::Admin];

    /// The class's name in configuration, metrics and the `RateLimit` headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Claim => "claim",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    /// Position in [`RateClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Who a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The authenticated user (the token's subject).
    User,
    /// The client address: the peer, or the entry the trusted proxies added.
    Address,
}

impl RateKey {
    /// Both keys, in the order of [`RateKey::index`].
    pub const ALL: [Self; 2] = [Self::User, Self::Address];

    /// The key's name in configuration, metrics and the `RateLimit` headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Address => "address",
        }
    }

    /// Position in [`RateKey::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One `[[rate_limits]]` entry: it replaces the built-in default of its class and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `purchase`, `claim`, `read` or `admin`.
    pub class: RateClass,
    /// `user` or `address`.
    pub key: RateKey,
    /// Requests per second, sustained; 0 turns this limit off. At most 1000000.
    pub rate: u32,
    /// Requests allowed at once (the bucket's depth), at least 1 when `rate` is not 0.
    /// Default: twice the rate.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A limit in force: a rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests per second, sustained (at least 1).
    pub rate: u32,
    /// Requests allowed at once (at least 1).
    pub burst: u32,
}

impl Limit {
    /// GCRA's emission interval: microseconds between two requests at the sustained rate
    /// (rounded up, so the rate is never exceeded).
    pub fn interval_us(self) -> u64 {
        1_000_000_u64.div_ceil(u64::from(self.rate.max(1)))
    }
}

/// The built-in limit of `class` per `key`. Per user: purchases and claims 5/s (burst 10),
/// reads 20/s (burst 40), admin 50/s (burst 100). Per address (only in force when
/// `gateway.trusted_proxies` is set, or configured by hand): ten times the user's, since many
/// shoppers share an address behind a carrier's NAT.
pub fn default_limit(class: RateClass, key: RateKey) -> Limit {
    let (rate, burst) = match class {
        RateClass::Purchase | RateClass::Claim => (5, 10),
        RateClass::Read => (20, 40),
        RateClass::Admin => (50, 100),
    };
    match key {
        RateKey::User => Limit { rate, burst },
        RateKey::Address => Limit {
            rate: rate * 10,
            burst: burst * 10,
        },
    }
}

/// Every limit in force: `[class][key]`, `None` where off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateTable(pub [[Option<Limit>; 2]; 4]);

impl RateTable {
    /// The limits in force given the configured entries: each entry replaces the default of
    /// its class and key; per-address defaults apply only `behind_proxies` (otherwise every
    /// shopper behind one proxy or CDN would share one budget).
    pub fn resolve(entries: &[RateLimit], behind_proxies: bool) -> Self {
        let mut table = [[None; 2]; 4];
        for class in RateClass::ALL {
            for key in RateKey::ALL {
                let configured = entries.iter().find(|e| e.class == class && e.key == key);
                table[class.index()][key.index()] = match configured {
                    Some(entry) if entry.rate == 0 => None,
                    Some(entry) => Some(Limit {
                        rate: entry.rate,
                        burst: entry.burst.unwrap_or(entry.rate.saturating_mul(2)),
                    }),
                    None if key == RateKey::Address && !behind_proxies => None,
                    None => Some(default_limit(class, key)),
                };
            }
        }
        Self(table)
    }

    /// The limit of `class` per `key`, if one is in force.
    pub fn get(&self, class: RateClass, key: RateKey) -> Option<Limit> {
        self.0[class.index()][key.index()]
    }
}

/// Checks the entries: known values, no class and key twice.
pub(crate) fn validate(entries: &[RateLimit], problems: &mut Vec<Invalid>) {
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("rate_limits[{i}]");
        if entry.rate > 1_000_000 {
            problems.push(Invalid::new(
                &format!("{at}.rate"),
                "at most 1000000 requests per second",
            ));
        }
        if entry.rate > 0 && entry.burst.is_some_and(|b| !(1..=10_000_000).contains(&b)) {
            problems.push(Invalid::new(
                &format!("{at}.burst"),
                "must be between 1 and 10000000",
            ));
        }
        if entries[..i]
            .iter()
            .any(|e| e.class == entry.class && e.key == entry.key)
        {
            problems.push(Invalid::new(
                &at,
                format!(
                    "a second limit for class `{}` per `{}`",
                    entry.class.name(),
                    entry.key.name()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(class: RateClass, key: RateKey, rate: u32, burst: Option<u32>) -> RateLimit {
        RateLimit {
            class,
            key,
            rate,
            burst,
        }
    }

    #[test]
    fn defaults_limit_users_and_leave_addresses_alone_unless_behind_proxies() {
        let table = RateTable::resolve(&[], false);
        assert_eq!(
            table.get(RateClass::Purchase, RateKey::User),
            Some(Limit { rate: 5, burst: 10 })
        );
        assert_eq!(
            table.get(RateClass::Claim, RateKey::User),
            Some(Limit { rate: 5, burst: 10 })
        );
        assert_eq!(
            table.get(RateClass::Read, RateKey::User),
            Some(Limit {
                rate: 20,
                burst: 40
            })
        );
        assert_eq!(table.get(RateClass::Admin, RateKey::User).unwrap().rate, 50);
        for class in RateClass::ALL {
            assert_eq!(table.get(class, RateKey::Address), None);
        }
        let proxied = RateTable::resolve(&[], true);
        assert_eq!(
            proxied.get(RateClass::Purchase, RateKey::Address),
            Some(Limit {
                rate: 50,
                burst: 100
            })
        );
    }

    #[test]
    fn an_entry_replaces_its_default_and_rate_zero_turns_it_off() {
        let table = RateTable::resolve(
            &[
                entry(RateClass::Purchase, RateKey::User, 0, None),
                entry(RateClass::Read, RateKey::User, 7, None),
                entry(RateClass::Admin, RateKey::Address, 3, Some(1)),
            ],
            false,
        );
        assert_eq!(table.get(RateClass::Purchase, RateKey::User), None);
        assert_eq!(
            table.get(RateClass::Read, RateKey::User),
            Some(Limit { rate: 7, burst: 14 })
        );
        assert_eq!(
            table.get(RateClass::Admin, RateKey::Address),
            Some(Limit { rate: 3, burst: 1 })
        );
        assert_eq!(
            table.get(RateClass::Claim, RateKey::User),
            Some(Limit { rate: 5, burst: 10 })
        );
    }

    #[test]
    fn the_emission_interval_never_exceeds_the_rate() {
        assert_eq!(Limit { rate: 5, burst: 1 }.interval_us(), 200_000);
        assert_eq!(Limit { rate: 3, burst: 1 }.interval_us(), 333_334);
        assert_eq!(
            Limit {
                rate: 1_000_000,
                burst: 1
            }
            .interval_us(),
            1
        );
    }

    #[test]
    fn entries_twice_or_out_of_range_are_named() {
        let mut problems = Vec::new();
        validate(
            &[
                entry(RateClass::Read, RateKey::User, 5, None),
                entry(RateClass::Read, RateKey::User, 2_000_000, Some(0)),
            ],
            &mut problems,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rate_limits[1].rate",
                "rate_limits[1].burst",
                "rate_limits[1]"
            ]
        );
    }

    #[test]
    fn limits_and_proxies_load_from_environment_variables() {
        let env = |pairs: &[(&str, &str)]| crate::Sources {
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let settings = crate::Settings::load(&env(&[
            (
                "FLASHGATE__RATE_LIMITS",
                r#"[{class = "purchase", key = "user", rate = 0}, {class = "read", key = "address", rate = 7, burst = 9}]"#,
            ),
            ("FLASHGATE__GATEWAY__TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
            ("FLASHGATE__GATEWAY__FORWARDED_HEADER", "forwarded"),
        ]))
        .unwrap();
        let table = settings.rate_table();
        assert_eq!(table.get(RateClass::Purchase, RateKey::User), None);
        assert_eq!(
            table.get(RateClass::Read, RateKey::Address),
            Some(Limit { rate: 7, burst: 9 })
        );
        assert_eq!(
            table.get(RateClass::Claim, RateKey::Address),
            Some(Limit {
                rate: 50,
                burst: 100
            }),
            "behind proxies, the per-address defaults apply"
        );
        assert_eq!(settings.gateway.trusted_proxy_ranges().len(), 2);
        assert_eq!(
            settings.gateway.forwarded_header,
            crate::ForwardedHeader::Forwarded
        );
        let err = crate::Settings::load(&env(&[
            ("FLASHGATE__GATEWAY__TRUSTED_PROXIES", "10.0.0.0/40"),
            (
                "FLASHGATE__RATE_LIMITS",
                r#"[{class = "reads", key = "user", rate = 1}]"#,
            ),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("rate_limits"), "{err}");
    }
}
