//! The limits in force and how a request is judged by them: folded into the purchase and
//! claim scripts (their keys and arguments made here), or by its own `EVALSHA` of
//! `lua/rate_limit.lua` for every other class, run by the router after authentication.

use std::net::SocketAddr;

use flashgate_config::{Cidr, ForwardedHeader, Limit, RateClass, RateKey, RateTable, Settings};
use fred::prelude::{Pool, Value};
use http::{HeaderMap, HeaderValue};

use crate::limits::address::{Client, client_address};
use crate::limits::headers::{Refusal, policy_member, policy_value, state_member};
use crate::scripts::{Script, int, reply_int, reply_text, unexpected_reply};

/// A limit armed for one request: whom it limits and its rate.
#[derive(Debug, Clone)]
pub struct Armed {
    /// Per user or per address.
    pub key: RateKey,
    /// `u:<user>` or `a:<address>`: in the purchase and claim scripts, the name of its TAT's
    /// field in the shopper hash; on its own, the hash tag of its key.
    pub who: String,
    /// Rate and burst.
    pub limit: Limit,
}

impl Armed {
    /// The arguments of this limit for `lua/rate_limit.lua` on its own: emission interval in
    /// µs, burst.
    pub fn args(&self) -> [Value; 2] {
        [
            int(self.limit.interval_us()),
            i64::from(self.limit.burst).into(),
        ]
    }

    /// The arguments of this limit for the purchase and claim scripts: emission interval in
    /// µs, burst, and whom it limits.
    pub fn folded_args(&self) -> [Value; 3] {
        let [interval, burst] = self.args();
        [interval, burst, self.who.as_str().into()]
    }
}

/// What `lua/rate_limit.lua` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed: `remaining` more at once under the tightest limit, one more after `next_us`.
    Allowed {
        /// Requests still allowed at once.
        remaining: u64,
        /// Microseconds until one more is.
        next_us: u64,
    },
    /// Refused by limit `index` (from 0) for `retry_us` microseconds.
    Limited {
        /// The limit that refused, from 0 in the order the limits were passed.
        index: usize,
        /// Microseconds until the request would be allowed.
        retry_us: u64,
    },
}

impl Verdict {
    /// Reads `{'ok', remaining, next_us}` or `{'rate_limited', index, retry_us}` at `at` of a
    /// script's reply; `None` when the reply is neither.
    pub fn parse(reply: &[Value], at: usize) -> Option<Self> {
        let number = |i| u64::try_from(reply_int(reply, at + i)).unwrap_or(0);
        match reply_text(reply, at).as_str() {
            "ok" => Some(Self::Allowed {
                remaining: number(1),
                next_us: number(2),
            }),
            "rate_limited" => Some(Self::Limited {
                index: usize::try_from(number(1)).unwrap_or(1).saturating_sub(1),
                retry_us: number(2),
            }),
            _ => None,
        }
    }
}

/// The limits one request passed, for its `RateLimit` header.
#[derive(Debug, Clone, Default)]
pub struct Quota {
    members: Vec<String>,
}

impl Quota {
    /// The `RateLimit` value (`None` when no limit was judged).
    pub fn header(&self) -> Option<HeaderValue> {
        if self.members.is_empty() {
            return None;
        }
        HeaderValue::from_str(&self.members.join(", ")).ok()
    }
}

/// Every limit in force, the trusted proxies, and each class's `RateLimit-Policy`.
#[derive(Debug)]
pub struct Limiter {
    table: RateTable,
    proxies: Vec<Cidr>,
    header: ForwardedHeader,
    policies: [Option<HeaderValue>; 4],
}

impl Limiter {
    /// The limits of `settings` (`[[rate_limits]]` over the defaults).
    pub fn new(settings: &Settings) -> Self {
        let table = settings.rate_table();
        let policies = RateClass::ALL.map(|class| {
            let members: Vec<String> = RateKey::ALL
                .iter()
                .filter_map(|&key| Some(policy_member(class, key, table.get(class, key)?)))
                .collect();
            policy_value(&members)
        });
        Self {
            table,
            proxies: settings.gateway.trusted_proxy_ranges(),
            header: settings.gateway.forwarded_header,
            policies,
        }
    }

    /// The class's `RateLimit-Policy` (`None` when nothing limits it).
    pub fn policy(&self, class: RateClass) -> Option<&HeaderValue> {
        self.policies[class.index()].as_ref()
    }

    /// The client of a request, when a per-address limit of `class` needs it.
    pub fn client(
        &self,
        class: RateClass,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<Client> {
        self.table.get(class, RateKey::Address)?;
        let peer = peer?;
        Some(Client(client_address(
            peer.ip(),
            headers,
            &self.proxies,
            self.header,
        )))
    }

    /// The limits of `class` in force for `user` (and `client`), user first; each names whom
    /// it limits, `u:<user>` or `a:<address>`.
    pub fn arm(&self, class: RateClass, user: &str, client: Option<Client>) -> Vec<Armed> {
        let mut armed = Vec::with_capacity(2);
        if let Some(limit) = self.table.get(class, RateKey::User) {
            armed.push(Armed {
                key: RateKey::User,
                who: format!("u:{user}"),
                limit,
            });
        }
        if let (Some(limit), Some(client)) = (self.table.get(class, RateKey::Address), client) {
            armed.push(Armed {
                key: RateKey::Address,
                who: format!("a:{}", client.key()),
                limit,
            });
        }
        armed
    }

    /// The refusal of a request of `class` by the `key` limit, for its 429.
    pub fn refusal(&self, class: RateClass, key: RateKey, retry_us: u64) -> Refusal {
        Refusal {
            class,
            key,
            retry_us,
            policy: self.policy(class).cloned(),
        }
    }

    /// Judges a request of `class` (neither purchase nor claim) by its own `EVALSHA`s: the user's
    /// limit and the address's, each under its own hash tag, sent together (not one after
    /// the other). Each is charged on its own. A Redis failure lets the request through
    /// (the limiter must not turn a Redis blip into an outage of the routes that do not need
    /// Redis); the caller counts it.
    pub async fn check(
        &self,
        redis: &Pool,
        script: &Script,
        prefix: &str,
        class: RateClass,
        user: &str,
        client: Option<Client>,
    ) -> Result<Quota, Judged> {
        let name = class.name();
        let armed: Vec<Armed> = self.arm(class, user, client);
        let run = |limit: &Armed| {
            // One hash tag per user, per address.
            let keys = vec![format!("{prefix}:{{{}}}:rl:{name}", limit.who)];
            let args: Vec<Value> = limit.args().into();
            async move { script.run::<Vec<Value>, _, _>(redis, keys, args).await }
        };
        let replies = match armed.as_slice() {
            [] => return Ok(Quota::default()),
            [one] => vec![run(one).await],
            [user, address, ..] => {
                let (a, b) = tokio::join!(run(user), run(address));
                vec![a, b]
            }
        };
        let mut quota = Quota::default();
        let mut refused: Option<Refusal> = None;
        for (limit, reply) in armed.iter().zip(replies) {
            let reply = reply.map_err(Judged::Failed)?;
            match Verdict::parse(&reply, 0) {
                Some(Verdict::Allowed { remaining, next_us }) => quota
                    .members
                    .push(state_member(class, limit.key, remaining, next_us)),
                Some(Verdict::Limited { retry_us, .. }) => {
                    if refused.as_ref().is_none_or(|r| r.retry_us < retry_us) {
                        refused = Some(self.refusal(class, limit.key, retry_us));
                    }
                }
                None => {
                    return Err(Judged::Failed(unexpected_reply(
                        "rate_limit",
                        &reply_text(&reply, 0),
                    )));
                }
            }
        }
        match refused {
            Some(refusal) => Err(Judged::Limited(refusal)),
            None => Ok(quota),
        }
    }
}

/// Why [`Limiter::check`] did not let a request through with a quota.
#[derive(Debug)]
pub enum Judged {
    /// A limit refused it: 429.
    Limited(Refusal),
    /// Redis did not judge it.
    Failed(fred::error::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripts::tests::reply;

    #[test]
    fn verdicts_are_read_from_the_reply() {
        assert_eq!(
            Verdict::parse(&reply(&["ok", "3", "150000"]), 0),
            Some(Verdict::Allowed {
                remaining: 3,
                next_us: 150_000
            })
        );
        assert_eq!(
            Verdict::parse(&reply(&["x", "rate_limited", "2", "90"]), 1),
            Some(Verdict::Limited {
                index: 1,
                retry_us: 90
            })
        );
        assert_eq!(Verdict::parse(&reply(&["admitted"]), 0), None);
    }

    #[test]
    fn armed_limits_key_users_and_addresses_apart() {
        let mut settings = Settings::default();
        settings.gateway.trusted_proxies = vec!["10.0.0.0/8".into()];
        let limiter = Limiter::new(&settings);
        let client = limiter.client(
            RateClass::Purchase,
            Some("10.0.0.1:4000".parse().unwrap()),
            &{
                let mut h = HeaderMap::new();
                h.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
                h
            },
        );
        let armed = limiter.arm(RateClass::Purchase, "ann", client);
        let who: Vec<&str> = armed.iter().map(|a| a.who.as_str()).collect();
        assert_eq!(who, ["u:ann", "a:198.51.100.7"]);
        assert_eq!(
            limiter.policy(RateClass::Purchase).unwrap(),
            r#""purchase-user";q=10;w=2, "purchase-address";q=100;w=2"#
        );
        // No proxies: no per-address limit by default, and no address looked up.
        let direct = Limiter::new(&Settings::default());
        assert_eq!(
            direct.client(
                RateClass::Read,
                Some("203.0.113.1:1".parse().unwrap()),
                &HeaderMap::new()
            ),
            None
        );
    }
}
