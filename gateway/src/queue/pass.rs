//! The queue pass: proof that the waiting room admitted this user for this sale, checked by
//! any gateway with no Redis trip (an HMAC-SHA256 over sale, user, ticket and expiry, keyed by
//! `queue.pass_secret`, which every gateway shares).
//!
//! Text: `v1.<sale_id>.<ticket_id>.<expiry_ms>.<hex mac>`; the user is not written in it but
//! bound by the MAC, so a pass copied to another account does not verify.

use flashgate_config::{JwtAlgorithm, Settings};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Label mixed into the JWT secret when the pass key is derived from it, so the two keys
/// differ (a pass MAC can never stand in for a token signature, or the other way round).
const DERIVE_LABEL: &[u8] = b"flashgate queue pass v1";

/// The key that signs and verifies passes.
#[derive(Clone)]
pub struct PassKey([u8; 32]);

impl std::fmt::Debug for PassKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassKey([redacted])")
    }
}

impl PassKey {
    /// `queue.pass_secret`, or one derived from an HS256 `gateway.jwt.secret`; `None` when
    /// there is neither (queued sales cannot be created then).
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let (secret, label): (&[u8], &[u8]) = if let Some(secret) = &settings.queue.pass_secret {
            (secret.expose().as_bytes(), b"flashgate queue pass key")
        } else if settings.gateway.jwt.algorithm == JwtAlgorithm::HS256 {
            (
                settings.gateway.jwt.secret.as_ref()?.expose().as_bytes(),
                DERIVE_LABEL,
            )
        } else {
            return None;
        };
        let mut mac = HmacSha256::new_from_slice(secret).ok()?;
        mac.update(label);
        Some(Self(mac.finalize().into_bytes().into()))
    }

    fn mac(&self, sale_id: u64, user_id: &str, ticket_id: &str, expiry_ms: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{sale_id}\n{user_id}\n{ticket_id}\n{expiry_ms}").as_bytes());
        mac
    }

    /// The pass of an admitted ticket, valid until `expiry_ms` (Unix ms).
    pub fn sign(&self, sale_id: u64, user_id: &str, ticket_id: &str, expiry_ms: i64) -> String {
        let tag = self
            .mac(sale_id, user_id, ticket_id, expiry_ms)
            .finalize()
            .into_bytes();
        format!("v1.{sale_id}.{ticket_id}.{expiry_ms}.{}", hex::encode(tag))
    }

    /// Whether `pass` admits `user_id` to `sale_id` at `now_ms`.
    pub fn verify(&self, pass: &str, sale_id: u64, user_id: &str, now_ms: i64) -> bool {
        let mut parts = pass.trim().split('.');
        let (Some("v1"), Some(sale), Some(ticket), Some(expiry), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return false;
        };
        let (Ok(sale), Ok(expiry), Ok(tag)) =
            (sale.parse::<u64>(), expiry.parse::<i64>(), hex::decode(tag))
        else {
            return false;
        };
        sale == sale_id
            && now_ms < expiry
            && self
                .mac(sale, user_id, ticket, expiry)
                .verify_slice(&tag)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashgate_config::Secret;

    fn key() -> PassKey {
        let mut settings = Settings::default();
        settings.queue.pass_secret = Some(Secret::new("x".repeat(40)));
        PassKey::from_settings(&settings).expect("a key")
    }

    #[test]
    fn a_pass_admits_only_its_user_and_sale_until_it_expires() {
        let key = key();
        let pass = key.sign(7, "ann", "t1", 10_000);
        assert!(key.verify(&pass, 7, "ann", 9_999));
        assert!(!key.verify(&pass, 7, "ann", 10_000), "expired");
        assert!(!key.verify(&pass, 7, "bob", 9_999), "another user");
        assert!(!key.verify(&pass, 8, "ann", 9_999), "another sale");
        let forged = pass.replace(".10000.", ".99999.");
        assert!(!key.verify(&forged, 7, "ann", 9_999), "a longer life");
        assert!(!key.verify("garbage", 7, "ann", 0));
        assert!(!key.verify(&format!("{pass}.x"), 7, "ann", 0));
    }

    #[test]
    fn the_key_comes_from_the_pass_secret_or_an_hs256_jwt_secret() {
        let mut settings = Settings::default();
        assert!(
            PassKey::from_settings(&settings).is_none(),
            "no secret at all"
        );
        settings.gateway.jwt.secret = Some(Secret::new("j".repeat(40)));
        let derived = PassKey::from_settings(&settings).expect("derived");
        assert_ne!(derived.0, key().0);
        settings.gateway.jwt.algorithm = JwtAlgorithm::RS256;
        assert!(PassKey::from_settings(&settings).is_none(), "not HS256");
    }
}
