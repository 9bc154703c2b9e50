//! Access and refresh tokens: HS256 JWTs with upstream's claims (spec §9.3).
//!
//! - Access token: `sub` (principal UUID, dashless hex), `sub_typ`
//!   (`user`|`service`), `scp` (scopes), `state` (the session's), `ids`
//!   (`[{"id", "idp"}]`), `exp`, `type: "access"`. It carries enough to
//!   authorize a request without touching the database.
//! - Refresh token: `sid` (session UUID, dashless hex), `exp`,
//!   `type: "refresh"`.
//!
//! The first of the secret keys signs; every key verifies, so keys can be
//! rotated by putting the new one first and dropping the old one after the
//! refresh max age. Keys are used as their UTF-8 bytes, like upstream
//! (python-jose), so tokens are interchangeable with an upstream server
//! configured with the same keys. Expiry is checked with no leeway.
//!
//! The client treats tokens as opaque; what matters on the wire is the
//! token response and the 401 messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AuthError;
use crate::model::{Identity, Principal, Session};

/// Upstream's 401 detail for an expired access token; the client refreshes
/// on any 401.
pub const ACCESS_EXPIRED: &str = "Access token has expired. Refresh token.";
/// Upstream's 401 detail for a token that does not verify.
pub const INVALID_CREDENTIALS: &str = "Could not validate credentials";
/// Upstream's 401 detail for an expired refresh token (or session).
pub const SESSION_EXPIRED: &str = "Session has expired. Please re-authenticate.";

/// One of the principal's identities inside an access token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityClaim {
    /// The id at the provider.
    pub id: String,
    /// The provider.
    pub idp: String,
}

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The principal's UUID, dashless hex.
    pub sub: String,
    /// `user` or `service`.
    pub sub_typ: String,
    /// The principal's scopes when the token was made.
    pub scp: Vec<String>,
    /// The session's state.
    #[serde(default)]
    pub state: Value,
    /// The principal's identities.
    pub ids: Vec<IdentityClaim>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Always `access`.
    #[serde(rename = "type")]
    pub token_type: String,
}

impl AccessClaims {
    /// The principal's UUID.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] if `sub` is not a UUID.
    pub fn principal(&self) -> Result<uuid::Uuid, AuthError> {
        uuid::Uuid::try_parse(&self.sub)
            .map_err(|_| AuthError::Unauthenticated(INVALID_CREDENTIALS.into()))
    }
}

/// The claims of a refresh token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefreshClaims {
    /// The session's UUID, dashless hex.
    pub sid: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Always `refresh`.
    #[serde(rename = "type")]
    pub token_type: String,
}

impl RefreshClaims {
    /// The session's UUID.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] if `sid` is not a UUID.
    pub fn session(&self) -> Result<uuid::Uuid, AuthError> {
        uuid::Uuid::try_parse(&self.sid)
            .map_err(|_| AuthError::Unauthenticated(INVALID_CREDENTIALS.into()))
    }
}

/// Makes and checks tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    /// The first signs; all verify (key rotation). Never empty.
    pub secret_keys: Vec<String>,
    /// Lifetime of access tokens (default 15 minutes).
    pub access_max_age: Duration,
    /// Lifetime of refresh tokens, and the sliding lifetime of sessions
    /// (default 7 days).
    pub refresh_max_age: Duration,
    /// Absolute lifetime of a session from its login (`None`: unlimited);
    /// pass it to [`crate::AuthStore::refresh_session`].
    pub session_max_age: Option<Duration>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field(
                "secret_keys",
                &format_args!("[{} redacted]", self.secret_keys.len()),
            )
            .field("access_max_age", &self.access_max_age)
            .field("refresh_max_age", &self.refresh_max_age)
            .field("session_max_age", &self.session_max_age)
            .finish()
    }
}

/// Default access-token lifetime: 15 minutes.
pub const DEFAULT_ACCESS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// Default refresh-token lifetime: 7 days.
pub const DEFAULT_REFRESH_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Select jsonwebtoken's RustCrypto backend for the process, once. Its
/// automatic choice panics at the first signature if another crate in the
/// build also enables the `aws_lc_rs` backend (features unify); installing
/// explicitly avoids that. If some other provider was installed first, it is
/// kept.
pub(crate) fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
        );
    });
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn exp_after(max_age: Duration) -> u64 {
    // Whole seconds, as python-jose writes them.
    (unix_now() + max_age.as_secs_f64()).floor() as u64
}

impl TokenIssuer {
    /// An issuer with the default lifetimes.
    ///
    /// # Errors
    /// [`AuthError::BadRequest`] for no keys or an empty key.
    pub fn new(secret_keys: Vec<String>) -> Result<Self, AuthError> {
        if secret_keys.is_empty() || secret_keys.iter().any(String::is_empty) {
            return Err(AuthError::BadRequest(
                "at least one non-empty secret key is required to sign tokens".into(),
            ));
        }
        Ok(TokenIssuer {
            secret_keys,
            access_max_age: DEFAULT_ACCESS_MAX_AGE,
            refresh_max_age: DEFAULT_REFRESH_MAX_AGE,
            session_max_age: None,
        })
    }

    /// A random secret key (32 bytes as hex) for servers configured without
    /// one; tokens then do not outlive the process.
    pub fn random_key() -> String {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        hex::encode(b)
    }

    fn signing_key(&self) -> Result<EncodingKey, AuthError> {
        let key = self
            .secret_keys
            .first()
            .ok_or_else(|| AuthError::Internal("no secret key to sign tokens".into()))?;
        Ok(EncodingKey::from_secret(key.as_bytes()))
    }

    fn sign(&self, claims: &impl Serialize) -> Result<String, AuthError> {
        ensure_crypto_provider();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.signing_key()?)
            .map_err(|e| AuthError::Internal(format!("cannot sign token: {e}")))
    }

    /// The access claims for a principal in a session.
    pub fn access_claims(&self, principal: &Principal, session: &Session) -> AccessClaims {
        AccessClaims {
            sub: principal.uuid.simple().to_string(),
            sub_typ: principal.principal_type.as_str().to_string(),
            scp: principal.scopes(),
            state: session.state.clone(),
            ids: principal
                .identities
                .iter()
                .map(|i| IdentityClaim {
                    id: i.id.clone(),
                    idp: i.provider.clone(),
                })
                .collect(),
            exp: exp_after(self.access_max_age),
            token_type: "access".into(),
        }
    }

    /// A signed access token.
    ///
    /// # Errors
    /// [`AuthError::Internal`] if signing fails.
    pub fn access_token(
        &self,
        principal: &Principal,
        session: &Session,
    ) -> Result<String, AuthError> {
        self.sign(&self.access_claims(principal, session))
    }

    /// A signed refresh token for a session.
    ///
    /// # Errors
    /// [`AuthError::Internal`] if signing fails.
    pub fn refresh_token(&self, session: &Session) -> Result<String, AuthError> {
        self.sign(&RefreshClaims {
            sid: session.uuid.simple().to_string(),
            exp: exp_after(self.refresh_max_age),
            token_type: "refresh".into(),
        })
    }

    /// Upstream's `AccessAndRefreshTokens` as sent after a session refresh:
    /// `{"access_token", "expires_in", "refresh_token",
    /// "refresh_token_expires_in", "token_type": "bearer"}` (lifetimes in
    /// seconds, as floats).
    ///
    /// # Errors
    /// [`AuthError::Internal`] if signing fails.
    pub fn refreshed(&self, principal: &Principal, session: &Session) -> Result<Value, AuthError> {
        Ok(json!({
            "access_token": self.access_token(principal, session)?,
            "expires_in": self.access_max_age.as_secs_f64(),
            "refresh_token": self.refresh_token(session)?,
            "refresh_token_expires_in": self.refresh_max_age.as_secs_f64(),
            "token_type": "bearer",
        }))
    }

    /// The token response after a login: [`TokenIssuer::refreshed`] plus
    /// `"identity": {"id", "provider"}` (how they logged in) and
    /// `"principal"` (its UUID, dashless hex).
    ///
    /// # Errors
    /// [`AuthError::Internal`] if signing fails.
    pub fn issue(
        &self,
        principal: &Principal,
        identity: &Identity,
        session: &Session,
    ) -> Result<Value, AuthError> {
        let mut v = self.refreshed(principal, session)?;
        if let Value::Object(m) = &mut v {
            m.insert(
                "identity".into(),
                json!({"id": identity.id, "provider": identity.provider}),
            );
            m.insert(
                "principal".into(),
                Value::String(principal.uuid.simple().to_string()),
            );
        }
        Ok(v)
    }

    /// Decode `token` with each key in turn. `Err(true)`: signed by one of
    /// ours but expired; `Err(false)`: not ours or malformed.
    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, bool> {
        ensure_crypto_provider();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        for key in &self.secret_keys {
            match jsonwebtoken::decode::<T>(
                token,
                &DecodingKey::from_secret(key.as_bytes()),
                &validation,
            ) {
                Ok(data) => return Ok(data.claims),
                // The signature is checked before expiry: this key made it.
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => return Err(true),
                Err(_) => continue,
            }
        }
        Err(false)
    }

    /// Check an access token (signature by any key, expiry, type).
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`]: [`ACCESS_EXPIRED`] when expired,
    /// [`INVALID_CREDENTIALS`] otherwise (bad signature, malformed, a
    /// refresh token).
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, AuthError> {
        match self.decode::<AccessClaims>(token) {
            Ok(c) if c.token_type == "access" => Ok(c),
            Ok(_) | Err(false) => Err(AuthError::Unauthenticated(INVALID_CREDENTIALS.into())),
            Err(true) => Err(AuthError::Unauthenticated(ACCESS_EXPIRED.into())),
        }
    }

    /// Check a refresh token (signature by any key, expiry, type).
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`]: [`SESSION_EXPIRED`] when expired,
    /// [`INVALID_CREDENTIALS`] otherwise.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, AuthError> {
        match self.decode::<RefreshClaims>(token) {
            Ok(c) if c.token_type == "refresh" => Ok(c),
            Ok(_) | Err(false) => Err(AuthError::Unauthenticated(INVALID_CREDENTIALS.into())),
            Err(true) => Err(AuthError::Unauthenticated(SESSION_EXPIRED.into())),
        }
    }
}
