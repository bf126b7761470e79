//! Token revocation: a logout revokes one token (`jti`) until its `exp`, an operator revokes
//! every token a user holds. Every gateway keeps the revoked tokens in memory (`denylist`),
//! so checking a request costs no Redis trip; Redis keeps them too (`store`), announces each
//! on a channel (`feed` listens), and is read back at start and after every reconnect.

pub mod counters;
pub mod denylist;
pub mod feed;
pub mod notice;
pub mod store;

use flashgate_config::Settings;

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::metrics::Metrics;
use crate::revocation::denylist::{Denylist, Revoked};
use crate::revocation::notice::Notice;
use crate::revocation::store::RevocationKeys;

/// Revocation in one gateway: whether it is on, its keys, and the denylist.
pub struct Revocations {
    /// The revoked tokens this gateway knows of.
    pub denylist: Denylist,
    /// Where Redis keeps them and announces them.
    pub keys: RevocationKeys,
    on: bool,
    leeway_seconds: u64,
    max_token_lifetime_seconds: u64,
    // The subscriber's `CLIENT SETNAME`, once connected.
    subscriber_name: std::sync::Mutex<Option<String>>,
}

impl Revocations {
    /// From `gateway.jwt` and the key prefix.
    pub fn new(settings: &Settings) -> Self {
        let jwt = &settings.gateway.jwt;
        Self {
            denylist: Denylist::default(),
            keys: RevocationKeys::new(&settings.redis.key_prefix),
            on: jwt.revocation,
            leeway_seconds: jwt.leeway_seconds,
            max_token_lifetime_seconds: jwt.max_token_lifetime_seconds,
            subscriber_name: std::sync::Mutex::new(None),
        }
    }

    /// The Redis client name of this gateway's revocation subscriber (as `CLIENT LIST` shows
    /// it), once it has connected.
    pub fn subscriber_name(&self) -> Option<String> {
        self.subscriber_name.lock().expect("name lock").clone()
    }

    pub(crate) fn set_subscriber_name(&self, name: &str) {
        *self.subscriber_name.lock().expect("name lock") = Some(name.to_owned());
    }

    /// Whether `gateway.jwt.revocation` is on.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// When a revoked token can be forgotten: once the verifier refuses it as expired.
    pub fn token_forget_at(&self, expires_at: u64) -> u64 {
        expires_at.saturating_add(self.leeway_seconds)
    }

    /// How long a user's revocation is kept: every token it covers has expired by then (no
    /// token may live longer than the configured maximum while revocation is on).
    pub fn user_keep_seconds(&self) -> u64 {
        self.max_token_lifetime_seconds + self.leeway_seconds
    }

    /// Takes in one announced revocation.
    pub fn apply(&self, notice: Notice) {
        match notice {
            Notice::Token { jti, forget_at } => self.denylist.revoke_token(&jti, forget_at),
            Notice::User {
                user_id,
                revoked_at,
            } => self.denylist.revoke_user(
                &user_id,
                revoked_at,
                revoked_at.saturating_add(self.user_keep_seconds()),
            ),
        }
    }

    /// 401 `token_revoked` when the caller's token is on the denylist (memory only).
    pub fn check(&self, caller: &Principal, metrics: &Metrics) -> Result<(), ApiError> {
        if !self.on {
            return Ok(());
        }
        match self.denylist.check(&caller.user_id, &caller.token) {
            None => Ok(()),
            Some(why) => {
                metrics.revocation.refused();
                Err(ApiError::TokenRevoked(match why {
                    Revoked::Token => "this token was revoked (logged out); sign in again",
                    Revoked::User => {
                        "every token of this user issued before a revocation was revoked; \
                         sign in again"
                    }
                }))
            }
        }
    }
}
