//! List cursors are client input: a cursor the API never handed out (an absurd time, a
//! negative or huge number, a missing id) gets 400 `invalid_request`, never a 500 from the
//! database driver.

use flashgate_gateway::auth::Role;
use http::{Method, StatusCode};

use crate::helpers::spawn_app;

#[tokio::test]
async fn absurd_list_cursors_get_400_on_every_list() {
    let app = spawn_app().await;
    let shopper = app.token("cursor-shopper", Role::Shopper);
    let manager = app.token("cursor-manager", Role::Manager);
    let lists = [
        ("/v1/me/orders", &shopper),
        ("/v1/me/coupons", &shopper),
        ("/v1/me/points/history", &shopper),
        ("/v1/admin/sales", &manager),
        ("/v1/admin/coupon-policies", &manager),
    ];
    // A negative year (passes a naive date parser), past year 9999, beyond i64, no id, not a
    // number at all, negative ids.
    let cursors = [
        "-62198755200000:x",
        "253402300800000:x",
        "99999999999999999999:x",
        "1700000000000:",
        "abc",
        "-1",
        "18446744073709551616",
    ];
    for (path, token) in lists {
        for cursor in cursors {
            let reply = app
                .request(
                    Method::GET,
                    &format!("{path}?cursor={cursor}"),
                    Some(token),
                    &[],
                    None,
                )
                .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{path} with cursor {cursor}: {:?}",
                reply.json
            );
            assert_eq!(reply.code(), "invalid_request", "{path} {cursor}");
            assert!(
                reply.json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("cursor")),
                "{path} {cursor}: {:?}",
                reply.json
            );
        }
        // The first page still works.
        let first = app.request(Method::GET, path, Some(token), &[], None).await;
        assert_eq!(first.status, StatusCode::OK, "{path}: {:?}", first.json);
    }
    app.stop().await;
}
