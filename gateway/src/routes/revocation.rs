//! Token revocation: `POST /v1/auth/logout` (any authenticated caller revokes the token it
//! presents, until that token's `exp`) and `POST /v1/admin/users/{user_id}/revoke-tokens`
//! (operators revoke every token a user was issued up to now).

use chrono::{DateTime, Utc};
use flashgate_events::ids::{self, USER_ID_MAX_LEN};
use http::StatusCode;
use serde::Serialize;

use crate::app::App;
use crate::failure::Failure;
use crate::http::error::ApiError;
use crate::http::request::Call;
use crate::http::response::{Response, json_response};
use crate::revocation::store;

#[derive(Serialize)]
struct LoggedOut<'a> {
    /// The revoked token's `jti`.
    jti: &'a str,
    /// The token's own expiry: it is refused until then (and could not be used after anyway).
    revoked_until: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct UserRevoked<'a> {
    user_id: &'a str,
    /// Tokens of the user issued at or before this second (by their `iat`; a token without
    /// `iat` counts as issued before) are refused from now on.
    revoked_before: Option<DateTime<Utc>>,
}

fn disabled() -> ApiError {
    ApiError::conflict(
        "revocation_disabled",
        "token revocation is off on this server (gateway.jwt.revocation = false)",
    )
}

/// Revokes the caller's token. The gateway that answers refuses it at once; the others when
/// the announcement reaches them (milliseconds).
pub async fn logout(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let revocation = &app.revocation;
    if !revocation.is_on() {
        return Err(disabled());
    }
    let token = &call.caller.token;
    // The verifier refuses tokens without `jti` while revocation is on.
    let jti = token
        .jti
        .as_deref()
        .ok_or_else(|| ApiError::Unauthenticated("token lacks the `jti` claim".into()))?;
    let forget_at = revocation.token_forget_at(token.expires_at);
    store::revoke_token(
        &app.redis,
        &app.scripts.revoke_token,
        &revocation.keys,
        jti,
        forget_at,
    )
    .await
    .map_err(Failure::unreachable("logout"))?;
    revocation.denylist.revoke_token(jti, forget_at);
    Ok(json_response(
        StatusCode::OK,
        &LoggedOut {
            jti,
            revoked_until: DateTime::from_timestamp(token.expires_at as i64, 0),
        },
    ))
}

/// Revokes every token of the user in the path issued up to now.
pub async fn revoke_user_tokens(app: &App, call: Call<'_>) -> Result<Response, ApiError> {
    let revocation = &app.revocation;
    if !revocation.is_on() {
        return Err(disabled());
    }
    let user_id = call.param;
    if !ids::fits(user_id, USER_ID_MAX_LEN) || user_id.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "user_id: must have 1 to {USER_ID_MAX_LEN} characters without control characters"
        )));
    }
    let keep = revocation.user_keep_seconds();
    let revoked_at = store::revoke_user(
        &app.redis,
        &app.scripts.revoke_token,
        &revocation.keys,
        user_id,
        keep,
    )
    .await
    .map_err(Failure::unreachable("revoke tokens"))?;
    revocation
        .denylist
        .revoke_user(user_id, revoked_at, revoked_at.saturating_add(keep));
    Ok(json_response(
        StatusCode::OK,
        &UserRevoked {
            user_id,
            revoked_before: DateTime::from_timestamp(revoked_at as i64, 0),
        },
    ))
}
