//! The crate's one error type and its HTTP status.

use tiled_catalog::CatalogError;

/// What can go wrong while authenticating or managing credentials.
///
/// The message of the caller-facing variants is the `detail` the server
/// sends; [`AuthError::status`] gives the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials (bad/expired token or API key, wrong password,
    /// expired or revoked session): 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed (e.g. API-key scopes beyond the
    /// principal's): 403.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed logins for this username from this address; refused
    /// until the window passes: 403 (see [`AuthError::status`]).
    #[error("Too many failed login attempts. Try again in {retry_after_secs} seconds.")]
    TooManyAttempts {
        /// Seconds until the next attempt may succeed.
        retry_after_secs: u64,
    },
    /// No such principal, API key or pending authorization: 404.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the state (e.g. revoking an unknown
    /// session, as upstream's 409): 409.
    #[error("{0}")]
    Conflict(String),
    /// The caller's mistake (bad UUID, unknown role, limits reached): 400.
    #[error("{0}")]
    BadRequest(String),
    /// The database failed or holds an unexpected schema: 500.
    #[error("authentication database error: {0}")]
    Database(String),
    /// Our bug: 500.
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// The HTTP status this error maps to.
    ///
    /// [`AuthError::TooManyAttempts`] is 403, not 429: the upstream client
    /// retries 429 responses on its own (honouring `Retry-After`), which
    /// would only spend more attempts against the limit or stall a login
    /// prompt for minutes.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Unauthenticated(_) => 401,
            AuthError::Forbidden(_) | AuthError::TooManyAttempts { .. } => 403,
            AuthError::NotFound(_) => 404,
            AuthError::Conflict(_) => 409,
            AuthError::BadRequest(_) => 400,
            AuthError::Database(_) | AuthError::Internal(_) => 500,
        }
    }

    /// The message for 401s from a bad or unknown API key.
    pub(crate) fn invalid_api_key() -> Self {
        AuthError::Unauthenticated("Invalid API key".into())
    }
}

impl From<CatalogError> for AuthError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::BadUri(m) | CatalogError::BadRequest(m) => AuthError::BadRequest(m),
            CatalogError::NotFound(m) => AuthError::NotFound(m),
            CatalogError::Conflict(m) => AuthError::Conflict(m),
            CatalogError::Database(m) => AuthError::Database(m),
            CatalogError::Internal(m) => AuthError::Internal(m),
            other => AuthError::Database(other.to_string()),
        }
    }
}
