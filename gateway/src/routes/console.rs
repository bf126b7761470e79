//! The live sale console: its page and its stream of snapshots (`console/`).

use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::Full;

use crate::app::App;
use crate::console::page::PAGE;
use crate::console::stream;
use crate::http::error::ApiError;
use crate::http::request::Call;
use crate::http::response::Response;

/// `GET /console`: the page (it asks for a manager's token itself).
pub async fn page(_app: &App) -> Result<Response, ApiError> {
    let mut response = http::Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Nothing but the gateway itself: the page's inline script and style, its own routes.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:",
        ),
    );
    Ok(response)
}

/// `GET /v1/admin/events`: a snapshot of the open sales every second, as Server-Sent Events.
pub async fn events(_app: &App, _call: Call<'_>) -> Result<Response, ApiError> {
    stream::open()
}
