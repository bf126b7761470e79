//! The revoked tokens one gateway knows, in memory: checked on every request without a Redis
//! trip, each entry forgotten once no token it covers can still be valid (bounded memory).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::http::auth::TokenFacts;

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// This very token (`jti`) was revoked (logout).
    Token,
    /// Every token of its user issued up to a moment was revoked, this one included.
    User,
}

#[derive(Default)]
struct Entries {
    /// `jti` → when to forget it (the token's `exp` plus the leeway), unix seconds.
    tokens: HashMap<String, u64>,
    /// user id → (revoked at, when to forget it), unix seconds.
    users: HashMap<String, (u64, u64)>,
}

/// The denylist of one gateway.
#[derive(Default)]
pub struct Denylist {
    entries: RwLock<Entries>,
    // Lets the common case (nothing revoked yet) skip the lock altogether.
    any: AtomicBool,
}

impl Denylist {
    /// Refuses the token `jti` until `forget_at` (unix seconds).
    pub fn revoke_token(&self, jti: &str, forget_at: u64) {
        let mut entries = self.entries.write().expect("denylist lock");
        let until = entries.tokens.entry(jti.to_owned()).or_default();
        *until = (*until).max(forget_at);
        self.any.store(true, Ordering::Release);
    }

    /// Refuses every token of `user` issued at or before `revoked_at` (unix seconds; a token
    /// without `iat` counts as issued before) until `forget_at`. A later revocation of the same
    /// user replaces an earlier one (it covers more).
    pub fn revoke_user(&self, user: &str, revoked_at: u64, forget_at: u64) {
        let mut entries = self.entries.write().expect("denylist lock");
        let entry = entries.users.entry(user.to_owned()).or_insert((0, 0));
        entry.0 = entry.0.max(revoked_at);
        entry.1 = entry.1.max(forget_at);
        self.any.store(true, Ordering::Release);
    }

    /// Whether the token of `user` described by `token` is revoked.
    pub fn check(&self, user: &str, token: &TokenFacts) -> Option<Revoked> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().expect("denylist lock");
        if let Some(jti) = &token.jti
            && entries.tokens.contains_key(jti.as_str())
        {
            return Some(Revoked::Token);
        }
        match entries.users.get(user) {
            Some(&(revoked_at, _)) if token.issued_at.is_none_or(|iat| iat <= revoked_at) => {
                Some(Revoked::User)
            }
            _ => None,
        }
    }

    /// Forgets the entries whose time is past `now` (unix seconds); returns how many.
    pub fn forget_expired(&self, now: u64) -> usize {
        let mut entries = self.entries.write().expect("denylist lock");
        let before = entries.tokens.len() + entries.users.len();
        entries.tokens.retain(|_, until| *until >= now);
        entries.users.retain(|_, (_, until)| *until >= now);
        before - entries.tokens.len() - entries.users.len()
    }

    /// Entries held: (tokens, users).
    pub fn len(&self) -> (usize, usize) {
        let entries = self.entries.read().expect("denylist lock");
        (entries.tokens.len(), entries.users.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(jti: &str, issued_at: Option<u64>) -> TokenFacts {
        TokenFacts {
            jti: Some(jti.to_owned()),
            issued_at,
            expires_at: 2_000,
        }
    }

    #[test]
    fn a_revoked_jti_is_refused_and_other_tokens_of_the_user_are_not() {
        let list = Denylist::default();
        assert_eq!(list.check("ann", &token("a", Some(100))), None);
        list.revoke_token("a", 2_005);
        assert_eq!(
            list.check("ann", &token("a", Some(100))),
            Some(Revoked::Token)
        );
        assert_eq!(list.check("ann", &token("b", Some(100))), None);
    }

    #[test]
    fn a_user_revocation_covers_tokens_issued_up_to_it_and_those_without_iat() {
        let list = Denylist::default();
        list.revoke_user("ann", 1_000, 9_000);
        assert_eq!(
            list.check("ann", &token("a", Some(999))),
            Some(Revoked::User)
        );
        assert_eq!(
            list.check("ann", &token("b", Some(1_000))),
            Some(Revoked::User),
            "the same second counts as before"
        );
        assert_eq!(list.check("ann", &token("c", None)), Some(Revoked::User));
        assert_eq!(list.check("ann", &token("d", Some(1_001))), None);
        assert_eq!(list.check("bob", &token("e", Some(10))), None);
    }

    #[test]
    fn a_later_user_revocation_wins_over_an_earlier_one_whatever_the_order_heard() {
        let list = Denylist::default();
        list.revoke_user("ann", 2_000, 9_000);
        list.revoke_user("ann", 1_000, 8_000);
        assert_eq!(
            list.check("ann", &token("a", Some(1_500))),
            Some(Revoked::User)
        );
    }

    #[test]
    fn entries_are_forgotten_once_past_their_time() {
        let list = Denylist::default();
        list.revoke_token("a", 100);
        list.revoke_token("b", 200);
        list.revoke_user("ann", 50, 150);
        assert_eq!(list.forget_expired(100), 0, "kept through its last second");
        assert_eq!(list.forget_expired(151), 2);
        assert_eq!(list.len(), (1, 0));
        assert_eq!(
            list.check("ann", &token("b", Some(10))),
            Some(Revoked::Token)
        );
        assert_eq!(list.forget_expired(201), 1);
        assert!(list.is_empty());
    }
}
