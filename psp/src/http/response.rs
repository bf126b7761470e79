//! Responses: every body is one buffer of JSON (or the metrics' text).

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// Every response body is one buffer.
pub type Response = http::Response<Full<Bytes>>;

/// Header set on an answer given again for an idempotency key (as Stripe does).
pub const REPLAYED: &str = "idempotent-replayed";

/// A JSON response with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("response types serialize");
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain-text response (`/metrics`).
pub fn text_response(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Marks `response` as given again for its idempotency key.
pub fn replayed(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
