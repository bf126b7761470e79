//! JWT verification: one pinned algorithm, one key, and roles from the `roles` claim.

use anyhow::Context;
use flashgate_config::{JwtAlgorithm, JwtSettings};
use flashgate_events::ids::{self, USER_ID_MAX_LEN};
use http::HeaderMap;
use http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::http::error::ApiError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Buys and claims.
    Shopper,
    /// Creates sales and coupon policies.
    Manager,
    /// Operates the system.
    Ops,
}

impl Role {
    /// The name used in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Shopper => "shopper",
            Role::Manager => "manager",
            Role::Ops => "ops",
        }
    }

    /// Parses a role name; unknown names are ignored by the verifier.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "shopper" => Some(Role::Shopper),
            "manager" => Some(Role::Manager),
            "ops" => Some(Role::Ops),
            _ => None,
        }
    }
}

/// Longest `jti` accepted, in characters: it is kept in memory and in Redis until the token's
/// `exp` once the token is revoked.
pub const JTI_MAX_LEN: usize = 128;

/// What revocation needs to know of the token a caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    /// The `jti` claim (always present while revocation is on).
    pub jti: Option<String>,
    /// The `iat` claim, in whole seconds since the epoch.
    pub issued_at: Option<u64>,
    /// The `exp` claim, in whole seconds since the epoch (rounded up).
    pub expires_at: u64,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `sub` claim.
    pub user_id: String,
    roles: Vec<Role>,
    /// The presented token's identity and times.
    pub token: TokenFacts,
}

impl Principal {
    /// `Ok` when the caller has `role`, else 403.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.roles.contains(&role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(role.as_str()))
        }
    }

    /// `Ok` when the caller has one of `roles`, else 403 naming the first.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        match roles {
            [first, ..] if !roles.iter().any(|role| self.roles.contains(role)) => {
                Err(ApiError::Forbidden(first.as_str()))
            }
            _ => Ok(()),
        }
    }
}

/// The claims of a token as the verifier reads them.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    // NumericDate may be fractional (RFC 7519).
    exp: f64,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    jti: Option<String>,
}

/// The `jsonwebtoken` algorithm for a configured one.
pub fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// Reads the PEM file an asymmetric algorithm needs; `setting` names the key of
/// `gateway.jwt` that should point at it.
pub(crate) fn read_key_file<'a>(
    path: Option<&'a std::path::Path>,
    setting: &str,
    alg: JwtAlgorithm,
) -> anyhow::Result<(Vec<u8>, &'a std::path::Path)> {
    let path = path.with_context(|| format!("gateway.jwt.{setting} is required for {alg:?}"))?;
    let pem = std::fs::read(path)
        .with_context(|| format!("reading gateway.jwt.{setting} {}", path.display()))?;
    Ok((pem, path))
}

/// Checks bearer tokens against the configured key and claims.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    // While revocation is on: a token must name itself (`jti`) and live at most this long,
    // so that a user's revocation can be forgotten once every token it covered has expired.
    revocation: Option<std::time::Duration>,
}

impl Verifier {
    /// Builds the verifier; fails (and the gateway refuses to start) without a usable key.
    pub fn from_settings(settings: &JwtSettings) -> anyhow::Result<Self> {
        let key = match settings.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = settings.secret.as_ref().context(
                    "gateway.jwt.secret is not set; the gateway needs a signing key \
                     (for the local stack: eval \"$(scripts/stack.sh env)\")",
                )?;
                DecodingKey::from_secret(secret.expose().as_bytes())
            }
            alg => {
                let (pem, path) = read_key_file(
                    settings.public_key_pem_file.as_deref(),
                    "public_key_pem_file",
                    alg,
                )?;
                match alg {
                    JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                }
                .with_context(|| format!("parsing JWT public key {}", path.display()))?
            }
        };
        let mut validation = Validation::new(algorithm(settings.algorithm));
        validation.leeway = settings.leeway_seconds;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not only right when present.
        let mut required = vec!["exp", "sub"];
        required.extend(settings.issuer.as_ref().map(|_| "iss"));
        required.extend(settings.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &settings.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let revocation = settings
            .revocation
            .then(|| std::time::Duration::from_secs(settings.max_token_lifetime_seconds));
        Ok(Self {
            key,
            validation,
            revocation,
        })
    }

    /// The caller behind the `Authorization: Bearer` header, or 401 saying why not.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let value = headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthenticated("missing Authorization header".into()))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthenticated("Authorization must be `Bearer <token>`".into())
            })?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|err| ApiError::Unauthenticated(describe(&err)))?;
        let mut claims = data.claims;
        // The user id becomes part of Redis keys and MySQL rows.
        if !ids::fits(&claims.sub, USER_ID_MAX_LEN) {
            return Err(ApiError::Unauthenticated(format!(
                "`sub` must have 1 to {USER_ID_MAX_LEN} characters"
            )));
        }
        if claims.sub.chars().any(|c| c.is_control() || c == '\n') {
            return Err(ApiError::Unauthenticated(
                "`sub` contains control characters".into(),
            ));
        }
        let token = self.token_facts(claims.jti.take(), claims.iat, claims.exp)?;
        let roles = claims.roles.iter().filter_map(|r| Role::parse(r)).collect();
        Ok(Principal {
            user_id: claims.sub,
            roles,
            token,
        })
    }

    /// The token's `jti`, `iat` and `exp`, checked against what revocation needs.
    fn token_facts(
        &self,
        jti: Option<String>,
        iat: Option<f64>,
        exp: f64,
    ) -> Result<TokenFacts, ApiError> {
        let jti = jti.filter(|jti| !jti.is_empty());
        if let Some(jti) = &jti
            && (jti.chars().count() > JTI_MAX_LEN || jti.chars().any(char::is_control))
        {
            return Err(ApiError::Unauthenticated(format!(
                "`jti` must have 1 to {JTI_MAX_LEN} characters without control characters"
            )));
        }
        let facts = TokenFacts {
            jti,
            issued_at: iat.map(|iat| iat.max(0.0).floor() as u64),
            expires_at: exp.max(0.0).ceil() as u64,
        };
        if let Some(max_lifetime) = self.revocation {
            if facts.jti.is_none() {
                return Err(ApiError::Unauthenticated(
                    "token lacks the `jti` claim (token revocation is on: every token must \
                     carry a unique `jti`)"
                        .into(),
                ));
            }
            let from = facts.issued_at.unwrap_or_else(unix_now);
            if facts.expires_at.saturating_sub(from) > max_lifetime.as_secs() {
                return Err(ApiError::Unauthenticated(format!(
                    "token lives longer than the {} seconds this server accepts",
                    max_lifetime.as_secs()
                )));
            }
        }
        Ok(facts)
    }
}

/// Seconds since the epoch by this host's clock.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A client-facing reason that says what failed without echoing the token.
fn describe(err: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet".into(),
        ErrorKind::InvalidSignature => "bad token signature".into(),
        ErrorKind::InvalidAlgorithm => {
            "token signed with an algorithm this server does not accept".into()
        }
        ErrorKind::InvalidIssuer => "wrong token issuer".into(),
        ErrorKind::InvalidAudience => "wrong token audience".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token lacks the `{claim}` claim"),
        _ => "invalid token".into(),
    }
}
