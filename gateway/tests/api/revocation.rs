//! Token revocation across gateways: logout, an operator's revoke-tokens, a gateway started
//! after a revocation, a subscriber that reconnects after missing a notice, and tokens without
//! `jti`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashgate_gateway::auth::{Role, Verifier};
use flashgate_gateway::revocation::store::RevocationKeys;
use fred::prelude::{ClientLike, KeysInterface, SortedSetsInterface};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::helpers::{TEST_SECRET, TestApp, eventually, spawn_app, spawn_app_with, start, unique};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn signed(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// What a gateway answers a shopper's read with this token: the status and the error code.
async fn answer(app: &TestApp, token: &str) -> (StatusCode, String) {
    let reply = app
        .request(Method::GET, "/v1/me/orders", Some(token), &[], None)
        .await;
    (reply.status, reply.code().to_owned())
}

fn refused() -> (StatusCode, String) {
    (StatusCode::UNAUTHORIZED, "token_revoked".to_owned())
}

fn accepted() -> (StatusCode, String) {
    (StatusCode::OK, String::new())
}

async fn logout(app: &TestApp, token: &str) -> crate::helpers::Reply {
    app.request(Method::POST, "/v1/auth/logout", Some(token), &[], None)
        .await
}

async fn revoke_tokens(app: &TestApp, token: &str, user: &str) -> crate::helpers::Reply {
    app.request(
        Method::POST,
        &format!("/v1/admin/users/{user}/revoke-tokens"),
        Some(token),
        &[],
        None,
    )
    .await
}

/// Polls `app` with `token` until it is refused; how long that took, or `None` past `within`.
async fn refused_within(app: &TestApp, token: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if answer(app, token).await == refused() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A second gateway on the same Redis, database and topics.
async fn twin(app: &TestApp) -> TestApp {
    start(app.settings.clone(), app.db.clone()).await
}

fn jti_of(app: &TestApp, token: &str) -> String {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    Verifier::from_settings(&app.settings.gateway.jwt)
        .expect("verifier")
        .authenticate(&headers)
        .expect("a valid token")
        .token
        .jti
        .expect("a jti")
}

/// The value of a metric without labels on `app`'s `/metrics`.
async fn metric(app: &TestApp, name: &str) -> u64 {
    let reply = app.request(Method::GET, "/metrics", None, &[], None).await;
    String::from_utf8_lossy(&reply.bytes)
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Waits until the gateway's revocation subscriber has subscribed: it reads the revocations
/// back once subscribed (a second reload after the one at start).
async fn subscribed(app: &TestApp) {
    assert!(
        eventually(|| async { metric(app, "flashgate_revocation_reloads_total").await >= 2 }).await,
        "the revocation subscriber never subscribed"
    );
}

#[tokio::test]
async fn a_token_logged_out_on_one_gateway_is_refused_by_both_within_a_second_while_the_users_other_tokens_work()
 {
    let a = spawn_app().await;
    let b = twin(&a).await;
    subscribed(&b).await;
    let user = unique("ann");
    let token = a.token(&user, Role::Shopper);
    let other = a.token(&user, Role::Shopper);
    assert_eq!(answer(&a, &token).await, accepted());
    assert_eq!(answer(&b, &token).await, accepted());

    let reply = logout(&a, &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["jti"], jti_of(&a, &token).as_str());
    assert!(reply.json["revoked_until"].is_string(), "{}", reply.json);

    assert_eq!(
        answer(&a, &token).await,
        refused(),
        "the gateway that logged out, at once"
    );
    let took = refused_within(&b, &token, Duration::from_secs(1)).await;
    assert!(
        took.is_some(),
        "gateway B still accepts the token after 1 s"
    );
    eprintln!("gateway B refused the token {took:?} after the logout was answered");
    assert_eq!(
        answer(&a, &other).await,
        accepted(),
        "another token of the same user"
    );
    assert_eq!(answer(&b, &other).await, accepted());
    // Logging out twice with the same token is refused like any other use of it.
    assert_eq!(logout(&b, &token).await.code(), "token_revoked");

    assert!(metric(&a, "flashgate_token_revoked_total").await >= 1);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn revoke_tokens_by_ops_refuses_every_earlier_token_of_the_user_on_both_gateways_but_not_a_later_one()
 {
    let a = spawn_app().await;
    let b = twin(&a).await;
    subscribed(&b).await;
    let user = unique("bea");
    let first = a.token(&user, Role::Shopper);
    let second = b.token(&user, Role::Shopper);
    let without_iat = signed(json!({
        "sub": user, "roles": ["shopper"], "exp": now() + 600, "jti": unique("jti")
    }));
    let bystander = a.token(&unique("cid"), Role::Shopper);
    for token in [&first, &second, &without_iat] {
        assert_eq!(answer(&b, token).await, accepted());
    }

    let shopper = a.token(&user, Role::Shopper);
    let denied = revoke_tokens(&a, &shopper, &user).await;
    assert_eq!(
        (denied.status, denied.code()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "a shopper may not revoke tokens"
    );
    let manager = a.token(&unique("mgr"), Role::Manager);
    assert_eq!(
        revoke_tokens(&a, &manager, &user).await.status,
        StatusCode::FORBIDDEN
    );

    let ops = a.token(&unique("ops"), Role::Ops);
    let reply = revoke_tokens(&a, &ops, &user).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["user_id"], user.as_str());
    assert!(reply.json["revoked_before"].is_string(), "{}", reply.json);

    for token in [&first, &second, &without_iat, &shopper] {
        assert_eq!(answer(&a, token).await, refused());
        assert!(
            refused_within(&b, token, Duration::from_secs(1))
                .await
                .is_some(),
            "gateway B still accepts an earlier token after 1 s"
        );
    }
    assert_eq!(answer(&b, &bystander).await, accepted(), "another user");

    // Tokens issued in the second of the revocation are revoked too: the next one is not.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = a.token(&user, Role::Shopper);
    assert_eq!(answer(&a, &later).await, accepted());
    assert_eq!(answer(&b, &later).await, accepted());
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_gateway_started_after_a_revocation_refuses_the_token_from_its_first_request() {
    let a = spawn_app().await;
    let user = unique("dan");
    let logged_out = a.token(&user, Role::Shopper);
    assert_eq!(logout(&a, &logged_out).await.status, StatusCode::OK);
    let victim = unique("eve");
    let earlier = a.token(&victim, Role::Shopper);
    let ops = a.token(&unique("ops"), Role::Ops);
    assert_eq!(
        revoke_tokens(&a, &ops, &victim).await.status,
        StatusCode::OK
    );

    let late = twin(&a).await;
    assert_eq!(answer(&late, &logged_out).await, refused());
    assert_eq!(answer(&late, &earlier).await, refused());
    assert_eq!(
        answer(&late, &a.token(&user, Role::Shopper)).await,
        accepted(),
        "the user's other tokens"
    );
    late.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_reconnects_reads_back_the_revocations_it_missed() {
    let a = spawn_app().await;
    subscribed(&a).await;
    let token = a.token(&unique("fay"), Role::Shopper);
    assert_eq!(answer(&a, &token).await, accepted());

    // A revocation the gateway never hears of (as if announced while its subscriber was cut
    // off by a failover): recorded in Redis, not published.
    let keys = RevocationKeys::new(&a.settings.redis.key_prefix);
    let _: () = a
        .redis
        .zadd(
            &keys.tokens,
            None,
            None,
            false,
            false,
            ((now() + 600) as f64, jti_of(&a, &token)),
        )
        .await
        .expect("zadd");
    let _: () = a
        .redis
        .expire(&keys.tokens, 600, None)
        .await
        .expect("expire");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        answer(&a, &token).await,
        accepted(),
        "no notice, no Redis trip: not known yet"
    );

    // Cut the subscriber's connection; it reconnects and reads everything back.
    let name = a
        .state
        .revocation
        .subscriber_name()
        .expect("the subscriber is named");
    let clients: String = a
        .redis
        .next()
        .custom(
            fred::cmd!("CLIENT"),
            vec!["LIST".to_owned(), "TYPE".to_owned(), "pubsub".to_owned()],
        )
        .await
        .expect("client list");
    let id = clients
        .lines()
        .find(|line| line.split(' ').any(|field| field == format!("name={name}")))
        .and_then(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .unwrap_or_else(|| panic!("no client named {name} in {clients}"))
        .to_owned();
    let killed: i64 = a
        .redis
        .next()
        .custom(
            fred::cmd!("CLIENT"),
            vec!["KILL".to_owned(), "ID".to_owned(), id],
        )
        .await
        .expect("client kill");
    assert_eq!(killed, 1);

    assert!(
        refused_within(&a, &token, Duration::from_secs(10))
            .await
            .is_some(),
        "the reconnected subscriber did not reload the revocations"
    );
    assert!(metric(&a, "flashgate_revocation_subscriber_reconnects_total").await >= 1);
    a.stop().await;
}

#[tokio::test]
async fn tokens_without_jti_are_refused_while_revocation_is_on_and_accepted_when_off() {
    let claims = json!({"sub": unique("gus"), "roles": ["shopper"], "exp": now() + 600});
    let token = signed(claims);

    let on = spawn_app().await;
    let reply = on
        .request(Method::GET, "/v1/me/orders", Some(&token), &[], None)
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`jti`"),
        "{}",
        reply.json
    );
    on.stop().await;

    let off = spawn_app_with(|s| s.gateway.jwt.revocation = false).await;
    assert_eq!(answer(&off, &token).await, accepted());
    let reply = logout(&off, &token).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::CONFLICT, "revocation_disabled")
    );
    off.stop().await;
}
