//! Dispatch by method and path, with a trace id, a timeout and metrics around every request.

use std::time::Instant;

use http::{HeaderValue, Method};

use crate::app::App;
use crate::http::error::ApiError;
use crate::http::health;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::routes::{admin_policies, admin_sales, coupons, orders, points, purchase};

/// Handles one request; never fails (errors become JSON responses).
pub async fn handle(app: &App, req: Request) -> Response {
    let started = Instant::now();
    let trace_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();

    let (route, result) = {
        let timeout = app.settings.gateway.request_timeout();
        let (route, future) = dispatch(app, req, &method, &segments, &trace_id);
        match tokio::time::timeout(timeout, future).await {
            Ok(result) => (route, result),
            Err(_) => (
                route,
                Err(ApiError::Overloaded {
                    retry_after: 1,
                    message: "the request took too long; retry shortly".into(),
                }),
            ),
        }
    };
    let mut response = result.unwrap_or_else(ApiError::into_response);
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    app.metrics
        .observe_request(route, response.status().as_u16(), started.elapsed());
    response
}

type Handler<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;

fn dispatch<'a>(
    app: &'a App,
    req: Request,
    method: &Method,
    segments: &[&'a str],
    trace_id: &'a str,
) -> (&'static str, Handler<'a>) {
    let get = method == Method::GET;
    let post = method == Method::POST;
    match segments {
        ["healthz"] if get => ("healthz", Box::pin(async { Ok(health::healthz()) })),
        ["readyz"] if get => (
            "readyz",
            Box::pin(async move { Ok(health::readyz(app).await) }),
        ),
        ["metrics"] if get => ("metrics", Box::pin(async move { Ok(health::metrics(app)) })),
        ["v1", "sales", sale_id, "purchases"] if post => {
            let sale_id: &'a str = sale_id;
            (
                "purchase",
                Box::pin(purchase::purchase(app, req, sale_id, trace_id)),
            )
        }
        ["v1", "orders", order_id] if get => {
            let order_id: &'a str = order_id;
            ("order_status", Box::pin(orders::get(app, req, order_id)))
        }
        ["v1", "me", "orders"] if get => ("my_orders", Box::pin(orders::list_mine(app, req))),
        ["v1", "admin", "sales"] if post => {
            ("admin_create_sale", Box::pin(admin_sales::create(app, req)))
        }
        ["v1", "admin", "sales"] if get => {
            ("admin_list_sales", Box::pin(admin_sales::list(app, req)))
        }
        ["v1", "admin", "sales", "restore"] if post => (
            "admin_restore_sales",
            Box::pin(admin_sales::restore(app, req)),
        ),
        ["v1", "admin", "sales", sale_id] if get => {
            let sale_id: &'a str = sale_id;
            (
                "admin_get_sale",
                Box::pin(admin_sales::get(app, req, sale_id)),
            )
        }
        ["v1", "admin", "sales", sale_id] if method == Method::PATCH => {
            let sale_id: &'a str = sale_id;
            (
                "admin_patch_sale",
                Box::pin(admin_sales::patch(app, req, sale_id)),
            )
        }
        ["v1", "coupon-policies", policy_id, "claims"] if post => {
            let policy_id: &'a str = policy_id;
            (
                "coupon_claim",
                Box::pin(coupons::claim(app, req, policy_id, trace_id)),
            )
        }
        ["v1", "me", "coupons"] if get => ("my_coupons", Box::pin(coupons::list_mine(app, req))),
        ["v1", "coupons", coupon_id, "redeem"] if post => {
            let coupon_id: &'a str = coupon_id;
            (
                "coupon_redeem",
                Box::pin(coupons::redeem(app, req, coupon_id, trace_id)),
            )
        }
        ["v1", "coupons", coupon_id, "cancel-redemption"] if post => {
            let coupon_id: &'a str = coupon_id;
            (
                "coupon_cancel_redemption",
                Box::pin(coupons::cancel_redemption(app, req, coupon_id, trace_id)),
            )
        }
        ["v1", "me", "points"] if get => ("my_points", Box::pin(points::balance(app, req))),
        ["v1", "me", "points", "history"] if get => {
            ("my_points_history", Box::pin(points::history(app, req)))
        }
        ["v1", "me", "points", "use"] if post => (
            "points_use",
            Box::pin(points::use_points(app, req, trace_id)),
        ),
        ["v1", "me", "points", "use", txid, "cancel"] if post => {
            let txid: &'a str = txid;
            (
                "points_cancel",
                Box::pin(points::cancel_use(app, req, txid, trace_id)),
            )
        }
        ["v1", "admin", "coupon-policies"] if post => (
            "admin_create_policy",
            Box::pin(admin_policies::create(app, req)),
        ),
        ["v1", "admin", "coupon-policies"] if get => (
            "admin_list_policies",
            Box::pin(admin_policies::list(app, req)),
        ),
        ["v1", "admin", "coupon-policies", policy_id] if get => {
            let policy_id: &'a str = policy_id;
            (
                "admin_get_policy",
                Box::pin(admin_policies::get(app, req, policy_id)),
            )
        }
        ["v1", "admin", "coupon-policies", policy_id] if method == Method::PATCH => {
            let policy_id: &'a str = policy_id;
            (
                "admin_patch_policy",
                Box::pin(admin_policies::patch(app, req, policy_id)),
            )
        }
        ["healthz"]
        | ["readyz"]
        | ["v1", "coupon-policies", _, "claims"]
        | ["v1", "me", "coupons"]
        | ["v1", "me", "points"]
        | ["v1", "me", "points", "history" | "use"]
        | ["v1", "me", "points", "use", _, "cancel"]
        | ["v1", "coupons", _, "redeem" | "cancel-redemption"]
        | ["v1", "admin", "coupon-policies"]
        | ["v1", "admin", "coupon-policies", _]
        | ["metrics"]
        | ["v1", "sales", _, "purchases"]
        | ["v1", "orders", _]
        | ["v1", "me", "orders"]
        | ["v1", "admin", "sales"]
        | ["v1", "admin", "sales", _] => (
            "method_not_allowed",
            Box::pin(async { Err(ApiError::MethodNotAllowed) }),
        ),
        _ => (
            "not_found",
            Box::pin(async { Err(ApiError::NotFound("no such route".into())) }),
        ),
    }
}
