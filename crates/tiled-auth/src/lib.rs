//! Multi-user authentication for tiled-rs, without HTTP: who is asking, and
//! with which scopes. The server's `/api/v1/auth/...` routes (spec §9) are
//! thin wrappers around what lives here.
//!
//! Module map:
//! - [`store`] — [`AuthStore`], the authentication database (principals,
//!   identities, roles, API keys, sessions) in SQLite or PostgreSQL, through
//!   the catalog crate's database layer. Tables are prefixed `auth_`, so the
//!   store can share a database with the catalog.
//! - [`schema`] — those tables and their versioned migrations.
//! - [`model`] — the rows as Rust types ([`Principal`], [`Session`],
//!   [`ApiKeyInfo`], ...), their wire JSON, and the default roles' scopes.
//! - [`tokens`] — HS256 access and refresh tokens ([`TokenIssuer`]) with
//!   upstream's claims, and the token response body.
//! - [`authenticators`] — password checks ([`PasswordAuthenticator`]):
//!   a dictionary (upstream's `DictionaryAuthenticator`) and a users file of
//!   argon2id hashes; [`hash_password`].
//! - [`pam`] — [`PamAuthenticator`], upstream's `PAMAuthenticator`: the
//!   system's accounts through Linux-PAM, opened at run time.
//! - [`limiter`] — [`LoginLimiter`], failed-login throttling per user and IP.
//! - [`device`] — [`DeviceFlow`], pending device-code authorizations.
//! - [`oidc`] — OpenID Connect providers ([`oidc::OidcProvider`]): discovery,
//!   signing keys, the code exchange and the id_token checks; the HTTP
//!   requests go through the caller's [`oidc::OidcHttp`].
//!
//! Everything is synchronous, like the catalog; the server calls the store
//! from blocking threads. Nothing here knows about requests, headers or
//! cookies, and nothing here logs secrets.
//!
//! Choices worth knowing:
//! - Secrets never reach the database in the clear: API keys are stored as
//!   SHA-256 of their decoded bytes (as upstream), passwords in users files
//!   as argon2id PHC strings.
//! - Comparisons of secrets are constant time (`subtle`).
//! - The store is the only shared state between server replicas; the login
//!   limiter and the device flow are in memory, per process (see their
//!   module docs).

pub mod authenticators;
pub mod device;
mod error;
pub mod limiter;
pub mod model;
pub mod oidc;
pub mod pam;
pub mod schema;
pub mod store;
pub mod tokens;

pub use authenticators::{
    DictionaryAuthenticator, PasswordAuthenticator, UsersFileAuthenticator, hash_password,
    verify_password,
};
pub use device::{DEVICE_CODE_MAX_AGE, DeviceAuthorization, DeviceFlow, DevicePoll};
pub use error::AuthError;
pub use limiter::LoginLimiter;
pub use model::{
    ADMIN_SCOPES, ApiKeyInfo, Identity, Principal, PrincipalType, Role, Session, USER_SCOPES,
};
pub use pam::PamAuthenticator;
pub use store::AuthStore;
pub use tiled_catalog::CatalogUri;
pub use tokens::{AccessClaims, IdentityClaim, RefreshClaims, TokenIssuer};
pub use uuid::Uuid;

/// Parse a principal or session UUID as the routes receive it: hex with or
/// without dashes (upstream's tokens carry the dashless form, its JSON the
/// dashed one).
///
/// # Errors
/// [`AuthError::BadRequest`] if it is not a UUID.
pub fn parse_uuid(text: &str) -> Result<Uuid, AuthError> {
    Uuid::try_parse(text.trim())
        .map_err(|_| AuthError::BadRequest(format!("{text:?} is not a UUID")))
}
