//! OpenID Connect logins: upstream's `tiled.authenticators:OIDCAuthenticator`.
//!
//! What lives here is the client side of the OIDC authorization-code flow,
//! minus the transport:
//! - [`OidcConfig`], the provider's `args` in the server config;
//! - [`Discovery`], the provider's `.well-known/openid-configuration`
//!   (fetched at first use and kept for the life of the process; a failed
//!   fetch is not remembered, so a provider that was down is tried again
//!   at the next login);
//! - its signing keys (JWKS), kept for [`JWKS_MAX_AGE`] and fetched again
//!   as soon as a token names a key id the cached set does not have (at most
//!   once per [`JWKS_MIN_REFETCH`], so forged key ids cannot make us hammer
//!   the provider);
//! - [`OidcProvider::login`]: exchange an authorization code at the token
//!   endpoint, verify the `id_token` (signature by a JWKS key, `iss`, `aud`
//!   = the configured audience, `exp`/`nbf` with [`CLOCK_LEEWAY_SECS`]) and
//!   read the user's id from the `user_id_claim` (default `sub`).
//!
//! The HTTP requests themselves go through [`OidcHttp`], which the server
//! implements with its HTTP client (with timeouts), so this crate stays
//! free of sockets and tests can answer with canned documents.
//!
//! Only asymmetric signatures are accepted (RS*, PS*, ES256/ES384, EdDSA),
//! and only those the provider announces in
//! `id_token_signing_alg_values_supported`: a token signed with `none` or
//! with an HMAC "key" taken from the JWKS never verifies. Nothing here logs
//! codes, tokens or the client secret.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

/// How long the provider's signing keys are trusted before they are fetched
/// again (upstream: one hour).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// The keys are fetched again for an unknown key id at most this often.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const CLOCK_LEEWAY_SECS: u64 = 60;
/// The claim that names the user unless `user_id_claim` says otherwise.
pub const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// The `args` an `OIDCAuthenticator` accepts.
pub const ARGS: [&str; 8] = [
    "audience",
    "client_id",
    "client_secret",
    "well_known_uri",
    "confirmation_message",
    "redirect_on_success",
    "redirect_on_failure",
    "user_id_claim",
];

/// One OIDC provider's settings (the `args` of an `OIDCAuthenticator`).
#[derive(Clone, PartialEq)]
pub struct OidcConfig {
    /// The `aud` the id_token must carry (usually the client id).
    pub audience: String,
    /// This server's client id at the provider.
    pub client_id: String,
    /// This server's client secret at the provider.
    pub client_secret: String,
    /// The provider's discovery document
    /// (`https://.../.well-known/openid-configuration`).
    pub well_known_uri: String,
    /// Printed by the client after a login (`{id}` is the user's id).
    pub confirmation_message: Option<String>,
    /// After a browser login, redirect here with the tokens in the query
    /// instead of answering them as JSON.
    pub redirect_on_success: Option<String>,
    /// After a failed browser login, redirect here instead of answering 401.
    pub redirect_on_failure: Option<String>,
    /// The id_token claim that is the user's id (default `sub`).
    pub user_id_claim: String,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("audience", &self.audience)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("well_known_uri", &self.well_known_uri)
            .field("confirmation_message", &self.confirmation_message)
            .field("redirect_on_success", &self.redirect_on_success)
            .field("redirect_on_failure", &self.redirect_on_failure)
            .field("user_id_claim", &self.user_id_claim)
            .finish()
    }
}

/// Why a login through the provider did not succeed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached, or its discovery document or keys
    /// are unusable: 502 (the login may work later).
    #[error("{0}")]
    Unavailable(String),
    /// The provider refused the code, or its id_token failed a check: 401.
    #[error("{0}")]
    Rejected(String),
}

impl OidcError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            OidcError::Unavailable(_) => 502,
            OidcError::Rejected(_) => 401,
        }
    }
}

/// What the provider answered to one request.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpReply {
    fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// How requests reach the provider. Implementations bound every request in
/// time and size; `Err` is a transport failure (refused, timed out, TLS),
/// not an HTTP error status.
pub trait OidcHttp: Send + Sync {
    /// `GET url` (with `Accept: application/json`).
    ///
    /// # Errors
    /// A message for the log when no HTTP answer came back.
    fn get(&self, url: &str) -> Result<HttpReply, String>;

    /// `POST url` with `form` as `application/x-www-form-urlencoded`, and
    /// HTTP Basic authentication if `basic_auth` is given. The user and
    /// password are already form-encoded (RFC 6749 §2.3.1): send them as
    /// they are.
    ///
    /// # Errors
    /// A message for the log when no HTTP answer came back.
    fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
    ) -> Result<HttpReply, String>;
}

/// The parts of the provider's discovery document a login needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// The announced id_token algorithms this server can verify.
    pub signing_algorithms: Vec<Algorithm>,
    /// `token_endpoint_auth_methods_supported` (default
    /// `client_secret_basic`, as the spec says).
    pub token_auth_methods: Vec<String>,
}

/// An asymmetric JWS algorithm by name; `None` for HMAC, `none` and
/// unknown names.
fn asymmetric(name: &str) -> Option<Algorithm> {
    let alg = Algorithm::from_str(name).ok()?;
    (alg.family() != AlgorithmFamily::Hmac).then_some(alg)
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|items| {
        items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

impl Discovery {
    /// From the discovery document's JSON.
    ///
    /// # Errors
    /// A message naming what is missing or unusable.
    pub fn from_json(doc: &Value) -> Result<Self, String> {
        let url = |k: &str| -> Result<String, String> {
            doc.get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("the discovery document has no {k}"))
        };
        let announced = strings(doc.get("id_token_signing_alg_values_supported"))
            .unwrap_or_else(|| vec!["RS256".to_string()]);
        let signing_algorithms: Vec<Algorithm> =
            announced.iter().filter_map(|a| asymmetric(a)).collect();
        if signing_algorithms.is_empty() {
            return Err(format!(
                "none of the provider's id_token signing algorithms ({}) can be verified here \
                 (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)",
                announced.join(", ")
            ));
        }
        Ok(Discovery {
            issuer: url("issuer")?,
            authorization_endpoint: url("authorization_endpoint")?,
            token_endpoint: url("token_endpoint")?,
            jwks_uri: url("jwks_uri")?,
            signing_algorithms,
            token_auth_methods: strings(doc.get("token_endpoint_auth_methods_supported"))
                .unwrap_or_else(|| vec!["client_secret_basic".to_string()]),
        })
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// In the form (`client_secret_post`).
    Post,
}

/// The methods to try, in order: Basic first when the provider takes it (the
/// spec's default), then the form, so a client registered for either works.
fn client_auth_methods(d: &Discovery) -> Vec<ClientAuth> {
    let has = |m: &str| d.token_auth_methods.iter().any(|x| x == m);
    match (has("client_secret_basic"), has("client_secret_post")) {
        (_, false) => vec![ClientAuth::Basic],
        (false, true) => vec![ClientAuth::Post],
        (true, true) => vec![ClientAuth::Basic, ClientAuth::Post],
    }
}

/// Why a token did not verify against a key set.
#[derive(Debug, PartialEq)]
enum Unverified {
    /// No key of the set fits the token (perhaps the provider rotated its
    /// keys: fetch them again).
    NoKey(String),
    /// A check failed.
    Invalid(String),
}

impl From<Unverified> for OidcError {
    fn from(e: Unverified) -> Self {
        match e {
            Unverified::NoKey(m) | Unverified::Invalid(m) => OidcError::Rejected(m),
        }
    }
}

/// Whether `jwk` may verify a signature made with `alg`.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return false;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return false;
    }
    if let Some(key_alg) = common.key_algorithm
        && Algorithm::from_str(&key_alg.to_string()).ok() != Some(alg)
    {
        return false;
    }
    matches!(
        (&jwk.algorithm, alg.family()),
        (AlgorithmParameters::RSA(_), AlgorithmFamily::Rsa)
            | (AlgorithmParameters::EllipticCurve(_), AlgorithmFamily::Ec)
            | (AlgorithmParameters::OctetKeyPair(_), AlgorithmFamily::Ed)
    )
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the id_token has expired".into(),
        ErrorKind::ImmatureSignature => "the id_token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "the id_token's issuer (iss) is not the provider's".into(),
        ErrorKind::InvalidAudience => {
            "the id_token is for another audience (aud is not the configured audience)".into()
        }
        ErrorKind::InvalidSignature => "the id_token's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the id_token has no {c} claim"),
        other => format!("the id_token is invalid ({other:?})"),
    }
}

fn verify(
    token: &str,
    keys: &[Jwk],
    issuer: &str,
    audience: &str,
    algorithms: &[Algorithm],
) -> Result<Map<String, Value>, Unverified> {
    crate::tokens::ensure_crypto_provider();
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| Unverified::Invalid("the id_token is not a signed JWT".into()))?;
    let alg = header.alg;
    if !algorithms.contains(&alg) {
        return Err(Unverified::Invalid(format!(
            "the id_token is signed with {alg:?}, which is not among the provider's \
             asymmetric signing algorithms"
        )));
    }
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| match &header.kid {
            Some(kid) => k.common.key_id.as_deref() == Some(kid.as_str()),
            None => true,
        })
        .filter(|k| key_fits(k, alg))
        .collect();
    if candidates.is_empty() {
        return Err(Unverified::NoKey(match &header.kid {
            Some(kid) => format!("no key {kid:?} for {alg:?} in the provider's JWKS"),
            None => format!("no key for {alg:?} in the provider's JWKS"),
        }));
    }
    let mut validation = Validation::new(alg);
    validation.leeway = CLOCK_LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let mut last = Unverified::Invalid("the id_token's signature does not verify".into());
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => last = Unverified::Invalid(describe(&e)),
        }
    }
    Err(last)
}

/// Verify an id_token against a key set: the signature (an asymmetric
/// algorithm among `algorithms`, by the key the header names), `iss` =
/// `issuer`, `aud` containing `audience`, `exp` (required) and `nbf`, both
/// with [`CLOCK_LEEWAY_SECS`]. Gives the claims.
///
/// # Errors
/// [`OidcError::Rejected`] saying which check failed.
pub fn verify_id_token(
    token: &str,
    keys: &[Jwk],
    issuer: &str,
    audience: &str,
    algorithms: &[Algorithm],
) -> Result<Map<String, Value>, OidcError> {
    Ok(verify(token, keys, issuer, audience, algorithms)?)
}

/// The keys of a JWKS document; keys this crate cannot read are skipped.
///
/// # Errors
/// A message if there is no `keys` list.
pub fn parse_jwks(doc: &Value) -> Result<Vec<Jwk>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS document has no keys list")?;
    Ok(keys
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .collect())
}

/// The user's id from verified claims: a non-empty string (or a number) at
/// `claim`.
///
/// # Errors
/// [`OidcError::Rejected`] if the claim is missing or empty.
pub fn user_id(claims: &Map<String, Value>, claim: &str) -> Result<String, OidcError> {
    let id = match claims.get(claim) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    if id.is_empty() {
        return Err(OidcError::Rejected(format!(
            "the id_token has no {claim:?} claim to name the user"
        )));
    }
    Ok(id)
}

struct KeyCache {
    keys: Arc<Vec<Jwk>>,
    fetched: Instant,
}

/// One configured OIDC provider: its settings, transport and caches.
pub struct OidcProvider {
    config: OidcConfig,
    http: Arc<dyn OidcHttp>,
    discovery: Mutex<Option<Arc<Discovery>>>,
    keys: Mutex<Option<KeyCache>>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl OidcProvider {
    /// A provider reached through `http`. Nothing is fetched yet.
    pub fn new(config: OidcConfig, http: Arc<dyn OidcHttp>) -> Self {
        OidcProvider {
            config,
            http,
            discovery: Mutex::new(None),
            keys: Mutex::new(None),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    fn fetch_json(&self, what: &str, url: &str) -> Result<Value, OidcError> {
        let unavailable = |detail: String| {
            tracing::warn!(url, "OpenID Connect {what}: {detail}");
            OidcError::Unavailable(format!(
                "The OpenID Connect provider is unavailable ({what} at {url}: {detail}). \
                 Try again later."
            ))
        };
        let reply = self.http.get(url).map_err(unavailable)?;
        if !reply.success() {
            return Err(unavailable(format!("HTTP status {}", reply.status)));
        }
        reply
            .json()
            .ok_or_else(|| unavailable("the answer is not JSON".into()))
    }

    /// The provider's discovery document, fetched at the first call and
    /// kept; a failure is not kept (the next call tries again).
    ///
    /// # Errors
    /// [`OidcError::Unavailable`] if it cannot be fetched or lacks an
    /// endpoint.
    pub fn discovery(&self) -> Result<Arc<Discovery>, OidcError> {
        if let Some(d) = lock(&self.discovery).as_ref() {
            return Ok(d.clone());
        }
        let url = &self.config.well_known_uri;
        let doc = self.fetch_json("discovery document", url)?;
        let d = Arc::new(Discovery::from_json(&doc).map_err(|e| {
            tracing::warn!(url = %url, "OpenID Connect discovery document: {e}");
            OidcError::Unavailable(format!(
                "The OpenID Connect provider's discovery document ({url}) is unusable: {e}"
            ))
        })?);
        tracing::info!(issuer = %d.issuer, "OpenID Connect provider discovered");
        *lock(&self.discovery) = Some(d.clone());
        Ok(d)
    }

    /// The signing keys: the cached set while fresh, unless `refetch` (an
    /// unknown key id) and the last fetch is older than [`JWKS_MIN_REFETCH`].
    /// When a fetch fails, a stale set is still used.
    fn keys(&self, jwks_uri: &str, refetch: bool) -> Result<Arc<Vec<Jwk>>, OidcError> {
        let stale = {
            let cache = lock(&self.keys);
            match cache.as_ref() {
                Some(c) => {
                    let age = c.fetched.elapsed();
                    let fresh = if refetch {
                        age < JWKS_MIN_REFETCH
                    } else {
                        age < JWKS_MAX_AGE
                    };
                    if fresh {
                        return Ok(c.keys.clone());
                    }
                    Some(c.keys.clone())
                }
                None => None,
            }
        };
        let fetched = self
            .fetch_json("signing keys", jwks_uri)
            .and_then(|doc| parse_jwks(&doc).map_err(OidcError::Unavailable));
        match (fetched, stale) {
            (Ok(keys), _) => {
                let keys = Arc::new(keys);
                *lock(&self.keys) = Some(KeyCache {
                    keys: keys.clone(),
                    fetched: Instant::now(),
                });
                Ok(keys)
            }
            (Err(_), Some(old)) if !refetch => Ok(old),
            (Err(e), _) => Err(e),
        }
    }

    /// Verify an id_token from this provider (see [`verify_id_token`]),
    /// fetching its keys again once if the token names an unknown key.
    ///
    /// # Errors
    /// [`OidcError::Rejected`] if a check fails; [`OidcError::Unavailable`]
    /// if the discovery document or the keys cannot be had.
    pub fn verify(&self, id_token: &str) -> Result<Map<String, Value>, OidcError> {
        let d = self.discovery()?;
        let check = |keys: &[Jwk]| {
            verify(
                id_token,
                keys,
                &d.issuer,
                &self.config.audience,
                &d.signing_algorithms,
            )
        };
        match check(&self.keys(&d.jwks_uri, false)?) {
            Err(Unverified::NoKey(_)) => Ok(check(&self.keys(&d.jwks_uri, true)?)?),
            other => Ok(other?),
        }
    }

    /// Exchange an authorization code at the token endpoint; gives the
    /// id_token. `redirect_uri` is the one the code was sent to.
    ///
    /// # Errors
    /// [`OidcError::Rejected`] if the provider refuses the code (or sends no
    /// id_token); [`OidcError::Unavailable`] if it cannot be reached.
    pub fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<String, OidcError> {
        let d = self.discovery()?;
        let c = &self.config;
        let (user, password) = (form_encode(&c.client_id), form_encode(&c.client_secret));
        let methods = client_auth_methods(&d);
        let mut refusal = String::new();
        for (i, method) in methods.iter().enumerate() {
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", c.client_id.as_str()),
            ];
            let basic = match method {
                ClientAuth::Basic => Some((user.as_str(), password.as_str())),
                ClientAuth::Post => {
                    form.push(("client_secret", c.client_secret.as_str()));
                    None
                }
            };
            let reply = self
                .http
                .post_form(&d.token_endpoint, &form, basic)
                .map_err(|e| {
                    tracing::warn!(url = %d.token_endpoint, "OpenID Connect token endpoint: {e}");
                    OidcError::Unavailable(format!(
                        "The OpenID Connect provider is unavailable (token endpoint: {e}). \
                         Try again later."
                    ))
                })?;
            let body = reply.json();
            if reply.success() {
                return body
                    .as_ref()
                    .and_then(|b| b.get("id_token"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        OidcError::Rejected(
                            "the provider's token response has no id_token (is the openid \
                             scope allowed for this client?)"
                                .into(),
                        )
                    });
            }
            let error = body
                .as_ref()
                .and_then(|b| b.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let description = body
                .as_ref()
                .and_then(|b| b.get("error_description"))
                .and_then(Value::as_str)
                .unwrap_or("");
            tracing::warn!(
                status = reply.status,
                error = %error,
                description,
                method = ?method,
                "OpenID Connect token endpoint refused the code exchange"
            );
            refusal = format!(
                "the provider refused the authorization code (HTTP {}{})",
                reply.status,
                if error.is_empty() {
                    String::new()
                } else {
                    format!(", {error}")
                }
            );
            // Another client-authentication method may suit this client;
            // any other refusal is final (the code may be used up).
            let retry = error == "invalid_client" && i + 1 < methods.len();
            if !retry {
                break;
            }
        }
        Err(OidcError::Rejected(refusal))
    }

    /// The whole login: exchange `code`, verify the id_token, give the
    /// user's id (the `user_id_claim`).
    ///
    /// # Errors
    /// As [`OidcProvider::exchange_code`] and [`OidcProvider::verify`];
    /// [`OidcError::Rejected`] for an empty code or a missing claim.
    pub fn login(&self, code: &str, redirect_uri: &str) -> Result<String, OidcError> {
        if code.trim().is_empty() {
            return Err(OidcError::Rejected("no authorization code".into()));
        }
        let id_token = self.exchange_code(code, redirect_uri)?;
        let claims = self.verify(&id_token)?;
        user_id(&claims, &self.config.user_id_claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Two 2048-bit RSA keys made for these tests (PKCS#1 DER, hex).
    const KEY_A: &str = include_str!("testdata/oidc_key_a.der.hex");
    const KEY_B: &str = include_str!("testdata/oidc_key_b.der.hex");
    const ISSUER: &str = "https://idp.example";

    fn encoding_key(hex_der: &str) -> EncodingKey {
        EncodingKey::from_rsa_der(&hex::decode(hex_der.trim()).unwrap())
    }

    fn public_jwk(hex_der: &str, kid: &str) -> Jwk {
        crate::tokens::ensure_crypto_provider();
        let mut jwk = Jwk::from_encoding_key(&encoding_key(hex_der), Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.into());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims(overrides: Value) -> Value {
        let mut c = json!({
            "iss": ISSUER, "aud": "tiled", "sub": "alice",
            "iat": now(), "exp": now() + 300,
        });
        if let (Value::Object(c), Value::Object(o)) = (&mut c, overrides) {
            c.extend(o);
        }
        c
    }

    fn sign(hex_der: &str, kid: &str, claims: &Value) -> String {
        crate::tokens::ensure_crypto_provider();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &encoding_key(hex_der)).unwrap()
    }

    fn check(token: &str) -> Result<Map<String, Value>, OidcError> {
        verify_id_token(
            token,
            &[public_jwk(KEY_A, "a")],
            ISSUER,
            "tiled",
            &[Algorithm::RS256],
        )
    }

    fn rejected(token: &str) -> String {
        match check(token) {
            Err(OidcError::Rejected(m)) => m,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_good_id_token_verifies() {
        let c = check(&sign(KEY_A, "a", &claims(json!({})))).unwrap();
        assert_eq!(user_id(&c, "sub").unwrap(), "alice");
        // aud may be a list holding the audience.
        let t = sign(KEY_A, "a", &claims(json!({"aud": ["other", "tiled"]})));
        assert!(check(&t).is_ok());
        // Within the clock leeway.
        let t = sign(KEY_A, "a", &claims(json!({"exp": now() - 10})));
        assert!(check(&t).is_ok());
        assert!(user_id(&c, "email").is_err());
    }

    #[test]
    fn bad_id_tokens_are_rejected() {
        let t = sign(KEY_A, "a", &claims(json!({"exp": now() - 3600})));
        assert!(rejected(&t).contains("expired"));
        let t = sign(KEY_A, "a", &claims(json!({"iss": "https://evil.example"})));
        assert!(rejected(&t).contains("issuer"));
        let t = sign(KEY_A, "a", &claims(json!({"aud": "someone-else"})));
        assert!(rejected(&t).contains("audience"));
        let t = sign(KEY_A, "a", &claims(json!({"nbf": now() + 3600})));
        assert!(rejected(&t).contains("not valid yet"));
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("exp");
        assert!(rejected(&sign(KEY_A, "a", &c)).contains("exp"));
        // Signed by another key that claims to be key "a".
        let t = sign(KEY_B, "a", &claims(json!({})));
        assert!(rejected(&t).contains("signature"));
        // A tampered payload.
        let t = sign(KEY_A, "a", &claims(json!({})));
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            &parts[1][..parts[1].len() - 2],
            parts[2]
        );
        assert!(check(&forged).is_err());
        // An unknown key id.
        let t = sign(KEY_A, "zz", &claims(json!({})));
        assert!(rejected(&t).contains("no key"));
        // HS256 with the RSA key's public modulus as the secret (the classic
        // algorithm-confusion forgery) and `alg: none` are refused.
        let jwk = public_jwk(KEY_A, "a");
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            panic!()
        };
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("a".into());
        let t = jsonwebtoken::encode(
            &h,
            &claims(json!({})),
            &EncodingKey::from_secret(rsa.n.as_bytes()),
        )
        .unwrap();
        assert!(rejected(&t).contains("HS256"));
        let none = format!(
            "eyJhbGciOiJub25lIiwia2lkIjoiYSJ9.{}.",
            t.split('.').nth(1).unwrap()
        );
        assert!(check(&none).is_err());
        assert!(check("not a token").is_err());
    }

    #[test]
    fn discovery_documents_are_checked() {
        let doc = json!({
            "issuer": ISSUER,
            "authorization_endpoint": "https://idp.example/auth",
            "token_endpoint": "https://idp.example/token",
            "jwks_uri": "https://idp.example/jwks",
            "id_token_signing_alg_values_supported": ["HS256", "RS256", "none"],
        });
        let d = Discovery::from_json(&doc).unwrap();
        assert_eq!(d.signing_algorithms, vec![Algorithm::RS256]);
        assert_eq!(client_auth_methods(&d), vec![ClientAuth::Basic]);
        let mut only_hmac = doc.clone();
        only_hmac["id_token_signing_alg_values_supported"] = json!(["HS256"]);
        assert!(Discovery::from_json(&only_hmac).is_err());
        let mut no_jwks = doc.clone();
        no_jwks.as_object_mut().unwrap().remove("jwks_uri");
        assert!(
            Discovery::from_json(&no_jwks)
                .unwrap_err()
                .contains("jwks_uri")
        );
        assert_eq!(form_encode("a b+c/é"), "a+b%2Bc%2F%C3%A9");
    }

    /// A provider answering from memory; counts JWKS fetches.
    struct Canned {
        up: bool,
        /// The client is registered for `client_secret_post` only.
        post_only: bool,
        jwks: Mutex<Value>,
        jwks_fetches: AtomicUsize,
        id_token: Mutex<String>,
    }

    impl OidcHttp for Canned {
        fn get(&self, url: &str) -> Result<HttpReply, String> {
            if !self.up {
                return Err("connection refused".into());
            }
            let body = match url {
                "https://idp.example/.well-known/openid-configuration" => json!({
                    "issuer": ISSUER,
                    "authorization_endpoint": "https://idp.example/auth",
                    "token_endpoint": "https://idp.example/token",
                    "jwks_uri": "https://idp.example/jwks",
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported":
                        ["client_secret_basic", "client_secret_post"],
                }),
                "https://idp.example/jwks" => {
                    self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    lock(&self.jwks).clone()
                }
                _ => {
                    return Ok(HttpReply {
                        status: 404,
                        body: vec![],
                    });
                }
            };
            Ok(HttpReply {
                status: 200,
                body: body.to_string().into_bytes(),
            })
        }

        fn post_form(
            &self,
            _url: &str,
            form: &[(&str, &str)],
            basic: Option<(&str, &str)>,
        ) -> Result<HttpReply, String> {
            let field = |name: &str| form.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            let client_ok = if self.post_only {
                basic.is_none() && field("client_secret") == Some("s:cret")
            } else {
                basic == Some(("tiled", "s%3Acret")) && field("client_secret").is_none()
            };
            let (status, body) = if !client_ok {
                (401, json!({"error": "invalid_client"}))
            } else if field("code") == Some("good") {
                (
                    200,
                    json!({"id_token": *lock(&self.id_token), "access_token": "x"}),
                )
            } else {
                (400, json!({"error": "invalid_grant"}))
            };
            Ok(HttpReply {
                status,
                body: body.to_string().into_bytes(),
            })
        }
    }

    fn provider(up: bool) -> (Arc<Canned>, OidcProvider) {
        provider_with(up, false)
    }

    fn provider_with(up: bool, post_only: bool) -> (Arc<Canned>, OidcProvider) {
        let canned = Arc::new(Canned {
            up,
            post_only,
            jwks: Mutex::new(json!({"keys": [public_jwk(KEY_A, "a")]})),
            jwks_fetches: AtomicUsize::new(0),
            id_token: Mutex::new(sign(KEY_A, "a", &claims(json!({})))),
        });
        let config = OidcConfig {
            audience: "tiled".into(),
            client_id: "tiled".into(),
            client_secret: "s:cret".into(),
            well_known_uri: "https://idp.example/.well-known/openid-configuration".into(),
            confirmation_message: None,
            redirect_on_success: None,
            redirect_on_failure: None,
            user_id_claim: "sub".into(),
        };
        (canned.clone(), OidcProvider::new(config, canned))
    }

    #[test]
    fn logins_go_through_the_transport() {
        let (canned, p) = provider(true);
        assert_eq!(p.login("good", "https://tiled/code").unwrap(), "alice");
        assert!(matches!(
            p.login("bad", "https://tiled/code"),
            Err(OidcError::Rejected(_))
        ));
        assert!(matches!(p.login("", "x"), Err(OidcError::Rejected(_))));
        // The keys are cached ...
        assert_eq!(p.login("good", "x").unwrap(), "alice");
        assert_eq!(canned.jwks_fetches.load(Ordering::SeqCst), 1);
        // ... but a rotated key is picked up (once; a forged kid is not
        // fetched again right away).
        *lock(&canned.jwks) = json!({"keys": [public_jwk(KEY_B, "b")]});
        *lock(&canned.id_token) = sign(KEY_B, "b", &claims(json!({"sub": "bob"})));
        let mut cache = lock(&p.keys);
        if let Some(c) = cache.as_mut() {
            c.fetched = Instant::now() - JWKS_MIN_REFETCH;
        }
        drop(cache);
        assert_eq!(p.login("good", "x").unwrap(), "bob");
        assert_eq!(canned.jwks_fetches.load(Ordering::SeqCst), 2);
        *lock(&canned.id_token) = sign(KEY_B, "forged", &claims(json!({})));
        assert!(p.login("good", "x").is_err());
        assert_eq!(canned.jwks_fetches.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_client_secret_goes_in_the_form_if_basic_is_refused() {
        let (_, p) = provider_with(true, true);
        assert_eq!(p.login("good", "x").unwrap(), "alice");
        assert!(matches!(p.login("bad", "x"), Err(OidcError::Rejected(_))));
    }

    #[test]
    fn an_unreachable_provider_is_unavailable() {
        let (_, p) = provider(false);
        let e = p.login("good", "x").unwrap_err();
        assert_eq!(e.status(), 502, "{e}");
        assert!(e.to_string().contains("unavailable"), "{e}");
        assert!(!format!("{:?}", p.config()).contains("s:cret"));
    }
}
