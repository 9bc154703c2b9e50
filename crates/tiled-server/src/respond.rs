//! Turning values and bytes into responses: JSON or msgpack by `Accept`,
//! strong ETags, `If-None-Match` → 304, download filenames.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::error::ApiError;

pub const MSGPACK: &str = "application/x-msgpack";

/// A strong ETag for `bytes`.
pub fn etag_of(bytes: &[u8]) -> String {
    format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Whether `If-None-Match` names `etag` (quoted or not, or `*`).
pub fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    let bare = etag.trim_matches('"');
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t == bare)
}

/// A body with a content type and an ETag; 304 if the caller has it already.
pub fn bytes_response(
    request: &HeaderMap,
    content_type: &str,
    body: Vec<u8>,
    etag: Option<String>,
) -> Response {
    budgeted_response(request, content_type, body, etag, None)
}

/// Size of the pieces a budgeted body is sent in.
const CHUNK: usize = 1 << 20;

/// As [`bytes_response`], holding `permit` (a share of the server's data
/// memory budget) until the last piece of the body has been handed to the
/// connection, so the budget bounds what is really in memory.
pub fn budgeted_response(
    request: &HeaderMap,
    content_type: &str,
    body: Vec<u8>,
    etag: Option<String>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Response {
    let etag = etag.unwrap_or_else(|| etag_of(&body));
    respond_with(request, content_type, etag, move || match permit {
        Some(permit) if body.len() > CHUNK => {
            let bytes = bytes::Bytes::from(body);
            let n = bytes.len();
            let pieces = (0..n).step_by(CHUNK).map(move |start| {
                Ok::<_, std::convert::Infallible>(bytes.slice(start..(start + CHUNK).min(n)))
            });
            // The permit lives in the stream and is released when the
            // stream is dropped, i.e. once the body has been sent.
            Body::from_stream(futures::stream::iter(pieces).map(move |piece| {
                let _held = &permit;
                piece
            }))
        }
        _ => Body::from(body),
    })
}

/// A response with `etag`: 304 if the caller has it already (the body is
/// then never made), else `make_body()` with its content type.
pub fn respond_with(
    request: &HeaderMap,
    content_type: &str,
    etag: String,
    make_body: impl FnOnce() -> Body,
) -> Response {
    let mut resp = if not_modified(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(make_body());
        if let Ok(v) = HeaderValue::from_str(content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// Whether the caller asked for msgpack (the client does for metadata).
pub fn wants_msgpack(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().unwrap_or("").trim() == MSGPACK)
}

/// A document as msgpack (if asked for) or JSON.
///
/// # Errors
/// 500 if encoding fails.
pub fn document<T: serde::Serialize + ?Sized>(
    request: &HeaderMap,
    value: &T,
) -> Result<Response, ApiError> {
    if wants_msgpack(request) {
        let body = rmp_serde::to_vec_named(value).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(bytes_response(request, MSGPACK, body, None))
    } else {
        let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(bytes_response(request, "application/json", body, None))
    }
}

/// Add `Content-Disposition: attachment; filename="..."`.
pub fn with_filename(mut resp: Response, filename: Option<&str>) -> Response {
    if let Some(name) = filename.filter(|n| !n.is_empty()) {
        let safe: String = name
            .chars()
            .filter(|c| !c.is_control() && *c != '"' && *c != '\\' && *c != '/')
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}
