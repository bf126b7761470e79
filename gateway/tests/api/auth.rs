//! Tokens: only the pinned algorithm and key, valid times, the configured audience; roles.

use std::time::{SystemTime, UNIX_EPOCH};

use flashgate_gateway::auth::Role;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use crate::helpers::{TEST_SECRET, TestApp, spawn_app, spawn_app_with};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn sign(alg: Algorithm, secret: &str, claims: serde_json::Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn b64(data: &str) -> String {
    use std::fmt::Write;
    // Unpadded base64url, enough for a hand-made `alg: none` token.
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = data.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let _ = write!(
                out,
                "{}",
                TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char
            );
        }
    }
    out
}

async fn purchase_with_token(app: &TestApp, sale_id: u64, token: &str) -> crate::helpers::Reply {
    app.request(
        Method::POST,
        &format!("/v1/sales/{sale_id}/purchases"),
        Some(token),
        &[],
        Some(json!({"quantity": 1})),
    )
    .await
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_get_401_and_change_nothing() {
    let app = spawn_app_with(|s| s.gateway.jwt.audience = Some("flashgate-test".into())).await;
    let sale_id = app.sale(json!({"stock": 1})).await;
    // A `jti` because token revocation is on by default (without one a token is refused).
    let claims = |exp: u64, aud: &str| json!({"sub": "mallory", "roles": ["shopper"], "exp": exp, "aud": aud, "jti": crate::helpers::unique("jti")});
    let good = claims(now() + 600, "flashgate-test");

    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&good.to_string())
    );
    let cases = [
        ("alg none", alg_none),
        (
            "wrong key",
            sign(
                Algorithm::HS256,
                "another-secret-another-secret-1234",
                good.clone(),
            ),
        ),
        (
            "another algorithm",
            sign(Algorithm::HS384, TEST_SECRET, good.clone()),
        ),
        (
            "expired",
            sign(
                Algorithm::HS256,
                TEST_SECRET,
                claims(now() - 600, "flashgate-test"),
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                TEST_SECRET,
                claims(now() + 600, "someone-else"),
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (case, token) in cases {
        let reply = purchase_with_token(&app, sale_id, &token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            reply.json
        );
        assert_eq!(reply.code(), "unauthenticated", "{case}");
    }
    let missing = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale_id}/purchases"),
            None,
            &[],
            Some(json!({"quantity": 1})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);

    // The one valid token still finds the stock untouched.
    let valid = sign(Algorithm::HS256, TEST_SECRET, good);
    assert_eq!(
        purchase_with_token(&app, sale_id, &valid).await.status,
        StatusCode::ACCEPTED
    );
    app.stop().await;
}

#[tokio::test]
async fn a_valid_token_without_the_needed_role_gets_403() {
    let app = spawn_app().await;
    let shopper = app.token("s1", Role::Shopper);
    let reply = app
        .request(Method::GET, "/v1/admin/sales", Some(&shopper), &[], None)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "forbidden");

    let sale_id = app.sale(json!({})).await;
    let manager = app.token("m1", Role::Manager);
    let reply = purchase_with_token(&app, sale_id, &manager).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "a manager is not a shopper"
    );
    app.stop().await;
}
