//! Minting development tokens with the configured key (`flashgate-gateway token`), for the
//! demo, the tests and the load test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use flashgate_config::{JwtAlgorithm, JwtSettings};
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

use crate::http::auth::{Role, algorithm, read_key_file};

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    /// Unique per token, so that one token can be revoked (logout) without the others.
    jti: String,
    roles: Vec<&'static str>,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs tokens the gateway configured with the same settings accepts.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    settings: JwtSettings,
}

impl Minter {
    /// Uses the HS256 secret, or the private key PEM for the asymmetric algorithms.
    pub fn from_settings(settings: &JwtSettings) -> anyhow::Result<Self> {
        let key = match settings.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = settings
                    .secret
                    .as_ref()
                    .context("gateway.jwt.secret is not set")?;
                EncodingKey::from_secret(secret.expose().as_bytes())
            }
            alg => {
                let (pem, path) = read_key_file(
                    settings.private_key_pem_file.as_deref(),
                    "private_key_pem_file",
                    alg,
                )?;
                match alg {
                    JwtAlgorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
                    JwtAlgorithm::ES256 => EncodingKey::from_ec_pem(&pem),
                    _ => EncodingKey::from_ed_pem(&pem),
                }
                .with_context(|| format!("parsing JWT private key {}", path.display()))?
            }
        };
        Ok(Self {
            key,
            header: Header::new(algorithm(settings.algorithm)),
            settings: settings.clone(),
        })
    }

    /// A token for `user` with `roles`, valid for `ttl` from now, with a fresh `jti` and `iat`.
    pub fn mint(&self, user: &str, roles: &[Role], ttl: Duration) -> anyhow::Result<String> {
        let max = self.settings.max_token_lifetime_seconds;
        if self.settings.revocation && ttl.as_secs() > max {
            anyhow::bail!(
                "a token may live at most {max} seconds while token revocation is on \
                 (gateway.jwt.max_token_lifetime_seconds); the gateway would refuse this one"
            );
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = MintedClaims {
            sub: user,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            roles: roles.iter().map(|r| r.as_str()).collect(),
            iat: now,
            exp: now + ttl.as_secs(),
            iss: self.settings.issuer.as_deref(),
            aud: self.settings.audience.as_deref(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).context("signing token")
    }
}

/// Parses `30s`, `15m`, `1h`, `2d` (or plain seconds).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 15m, 1h or 2d"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60,
        "h" => value * 3_600,
        "d" => value * 86_400,
        _ => return Err(format!("unknown unit `{unit}` (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::Verifier;
    use flashgate_config::Secret;
    use http::{HeaderMap, HeaderValue};

    fn hs256() -> JwtSettings {
        JwtSettings {
            secret: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            ..JwtSettings::default()
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[test]
    fn a_minted_token_verifies_with_its_roles() {
        let token = Minter::from_settings(&hs256())
            .unwrap()
            .mint("alice", &[Role::Shopper], Duration::from_secs(60))
            .unwrap();
        let principal = Verifier::from_settings(&hs256())
            .unwrap()
            .authenticate(&bearer(&token))
            .unwrap();
        assert_eq!(principal.user_id, "alice");
        assert!(principal.require(Role::Shopper).is_ok());
        assert!(principal.require(Role::Manager).is_err());
        let facts = &principal.token;
        assert_eq!(facts.jti.as_deref().map(str::len), Some(32));
        assert_eq!(facts.expires_at - facts.issued_at.unwrap(), 60);
    }

    #[test]
    fn every_minted_token_has_its_own_jti() {
        let minter = Minter::from_settings(&hs256()).unwrap();
        let verifier = Verifier::from_settings(&hs256()).unwrap();
        let jti = |token: String| {
            verifier
                .authenticate(&bearer(&token))
                .unwrap()
                .token
                .jti
                .unwrap()
        };
        let ttl = Duration::from_secs(60);
        assert_ne!(
            jti(minter.mint("a", &[Role::Shopper], ttl).unwrap()),
            jti(minter.mint("a", &[Role::Shopper], ttl).unwrap())
        );
    }

    fn hand_made(claims: serde_json::Value) -> String {
        let secret = hs256().secret.unwrap();
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.expose().as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn without_jti_a_token_is_refused_while_revocation_is_on_and_accepted_when_off() {
        let token = hand_made(serde_json::json!({"sub": "a", "exp": now() + 60}));
        let refused = Verifier::from_settings(&hs256())
            .unwrap()
            .authenticate(&bearer(&token))
            .unwrap_err();
        assert!(refused.to_string().contains("`jti`"), "{refused}");
        let off = JwtSettings {
            revocation: false,
            ..hs256()
        };
        let principal = Verifier::from_settings(&off)
            .unwrap()
            .authenticate(&bearer(&token))
            .unwrap();
        assert_eq!(principal.token.jti, None);
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused_while_revocation_is_on() {
        let settings = JwtSettings {
            max_token_lifetime_seconds: 3_600,
            ..hs256()
        };
        let verifier = Verifier::from_settings(&settings).unwrap();
        let now = now();
        let claims = |iat: Option<u64>, exp: u64| {
            let mut claims = serde_json::json!({"sub": "a", "jti": "j", "exp": exp});
            if let Some(iat) = iat {
                claims["iat"] = iat.into();
            }
            bearer(&hand_made(claims))
        };
        assert!(
            verifier
                .authenticate(&claims(Some(now), now + 3_600))
                .is_ok()
        );
        assert!(
            verifier
                .authenticate(&claims(Some(now), now + 3_601))
                .is_err()
        );
        assert!(verifier.authenticate(&claims(None, now + 3_000)).is_ok());
        assert!(verifier.authenticate(&claims(None, now + 4_000)).is_err());
    }

    #[test]
    fn a_token_longer_than_the_gateway_accepts_is_not_minted() {
        let minter = Minter::from_settings(&hs256()).unwrap();
        let max = hs256().max_token_lifetime_seconds;
        assert!(minter.mint("a", &[], Duration::from_secs(max)).is_ok());
        assert!(minter.mint("a", &[], Duration::from_secs(max + 1)).is_err());
    }

    #[test]
    fn ttl_parsing_accepts_units() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn no_key_means_no_verifier() {
        assert!(Verifier::from_settings(&JwtSettings::default()).is_err());
    }
}
