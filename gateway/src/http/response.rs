//! Responses: every body is one buffer of JSON (or the metrics' text).

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use serde::ser::SerializeMap;

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

/// One page of a list: its rows under the list's name, and the cursor of the next page.
struct Page<T> {
    name: &'static str,
    rows: Vec<T>,
    next_cursor: Option<String>,
}

impl<T: Serialize> Serialize for Page<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.name, &self.rows)?;
        map.serialize_entry("next_cursor", &self.next_cursor)?;
        map.end()
    }
}

/// 200 with a page of a list fetched with `limit + 1` rows: the first `limit` under `name`,
/// and `next_cursor`, the cursor of the last of them when more rows follow.
pub fn list_page<T: Serialize>(
    name: &'static str,
    mut rows: Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> Option<String>,
) -> Response {
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().and_then(cursor_of)
    } else {
        None
    };
    json_response(
        StatusCode::OK,
        &Page {
            name,
            rows,
            next_cursor,
        },
    )
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
