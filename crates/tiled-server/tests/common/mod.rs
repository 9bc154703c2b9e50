//! Helpers shared by the HTTP integration tests: send a request to a
//! router in process and keep what came back.

// Each test crate uses its own subset.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics with the start of the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text for a message, whatever its bytes.
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as text (panics if it is not UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Send `req` to `app` and read the whole response.
pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// A request builder for `uri` with a `Host` header.
pub fn request(uri: &str) -> axum::http::request::Builder {
    Request::get(uri).header(header::HOST, "test")
}

/// `GET uri`.
pub async fn get(app: &Router, uri: &str) -> Reply {
    send(app, request(uri).body(Body::empty()).expect("request")).await
}
