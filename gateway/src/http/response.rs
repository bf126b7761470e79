//! Responses: every body is one buffer of JSON (or the metrics' text).

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// Every response body is one buffer.
pub type Response = http::Response<Full<Bytes>>;

/// A JSON response with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("response types serialize");
    json_bytes(status, Bytes::from(body))
}

/// A response whose body is already-encoded JSON.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut response = http::Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain-text response (used by `/metrics`).
pub fn text_response(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The body of a response as text, for unit tests.
#[cfg(test)]
pub fn body_text(response: &Response) -> String {
    use http_body_util::BodyExt as _;
    let body = response.body().clone();
    let bytes = futures_lite_block_on(body.collect()).map(|c| c.to_bytes());
    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
}

/// `Full` resolves at once; this drives it without a runtime.
#[cfg(test)]
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}
