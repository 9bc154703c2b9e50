//! One error type for the HTTP layer, mapped to status codes in one place.
//!
//! | variant            | status | when                                             |
//! |--------------------|--------|--------------------------------------------------|
//! | `BadRequest`       | 400    | bad parameters, too large a response, bad filter |
//! | `Unauthorized`     | 401    | missing or wrong credentials                     |
//! | `NotFound`         | 404    | no such node, or wrong family for the route      |
//! | `MethodNotAllowed` | 405    | the route exists but not for this method         |
//! | `NotAcceptable`    | 406    | no requested media type is supported             |
//! | `Conflict`         | 409    | a taken key, deleting a non-empty container      |
//! | `TooLarge`         | 413    | a request body over the upload limit             |
//! | `Forbidden`        | 403    | authenticated, but the tree is read-only         |
//! | `Unprocessable`    | 422    | malformed slice/block/shape, validation failures |
//! | `Internal`         | 500    | our bug or a failed backend (logged)             |
//!
//! Every error body is `{"detail": ...}` with `Content-Type:
//! application/json` exactly: the Python client shows `detail` only then.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tiled_adapters::AdapterError;
use tiled_formats::FormatError;
use tiled_model::ModelError;

/// An error answered to the caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Unauthorized {
        detail: String,
        /// Whether to add `WWW-Authenticate` (missing credentials).
        challenge: bool,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Internal(String),
    /// A service this server depends on (an OpenID Connect provider) could
    /// not be reached or answered nonsense: 502, with the message.
    #[error("{0}")]
    BadGateway(String),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                "Internal server error".to_string()
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({ "detail": detail }).to_string();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let ApiError::Unauthorized {
            challenge: true, ..
        } = self
        {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer scope=\"read:metadata\""),
            );
        }
        resp
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::InvalidQuery(_) => ApiError::BadRequest(e.to_string()),
            ModelError::InvalidParameter(_)
            | ModelError::InvalidSlice(_)
            | ModelError::BlockOutOfRange(_)
            | ModelError::InvalidDtype(_)
            | ModelError::InvalidStructure(_) => ApiError::Unprocessable(e.to_string()),
        }
    }
}

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        match e {
            AdapterError::BadRequest(m) | AdapterError::NotSupported(m) => ApiError::BadRequest(m),
            AdapterError::NotFound(m) => ApiError::NotFound(m),
            AdapterError::Conflict(m) => ApiError::Conflict(m),
            AdapterError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<FormatError> for ApiError {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::NotAcceptable { .. } | FormatError::Unsupported(_) => {
                ApiError::NotAcceptable(e.to_string())
            }
            FormatError::Internal(m) => ApiError::Internal(m),
        }
    }
}
