//! Multi-user authentication over HTTP (spec §9.3): password providers,
//! JWT sessions with refresh and revocation, API keys, `whoami`. The
//! state (principals, sessions, keys) lives in `tiled_auth`'s database;
//! this module maps its calls to upstream's routes under `/api/v1/auth`.
//!
//! Besides the password grant, every password provider offers upstream's
//! device-code flow for terminals (the client's `device_code_grant` with
//! no `client_id`): `POST provider/{p}/authorize` starts it, the user
//! approves the printed code with username and password at the HTML form
//! `provider/{p}/device_code`, and the terminal polls `POST
//! provider/{p}/token` with a JSON body. Admins (scopes `read:principals`,
//! `write:principals`, `admin:apikeys`) list and create principals and
//! manage their API keys under `principal/...`.
//!
//! OpenID Connect providers ([`ProviderKind::Oidc`]) have no password
//! grant: browsers log in at the provider (`GET provider/{p}/authorize`,
//! back at `provider/{p}/code`) and terminals use the same device-code
//! flow, approved at the provider; their routes are in [`crate::oidc`].

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tiled_auth::{
    AuthError, AuthStore, DeviceFlow, DevicePoll, Identity, LoginLimiter, PasswordAuthenticator,
    TokenIssuer, Uuid,
};

use crate::auth::{Access, Caller};
use crate::error::ApiError;
use crate::respond::document;
use crate::{App, Request};

/// How a provider tells who is logging in.
pub enum ProviderKind {
    /// Username and password, checked by this server (upstream's
    /// "internal" mode).
    Password(Arc<dyn PasswordAuthenticator>),
    /// An OpenID Connect provider the user logs in at (upstream's
    /// "external" mode; see [`crate::oidc`]).
    Oidc(Arc<tiled_auth::oidc::OidcProvider>),
}

/// One login provider (upstream's `authentication.providers[*]`).
pub struct Provider {
    /// The name in URLs (`/auth/provider/{name}/token`).
    pub name: String,
    pub kind: ProviderKind,
}

impl Provider {
    /// A username/password provider.
    pub fn password(
        name: impl Into<String>,
        authenticator: Arc<dyn PasswordAuthenticator>,
    ) -> Self {
        Provider {
            name: name.into(),
            kind: ProviderKind::Password(authenticator),
        }
    }

    /// An OpenID Connect provider.
    pub fn oidc(name: impl Into<String>, provider: Arc<tiled_auth::oidc::OidcProvider>) -> Self {
        Provider {
            name: name.into(),
            kind: ProviderKind::Oidc(provider),
        }
    }
}

/// What a multi-user server authenticates with.
pub struct MultiUser {
    /// Tag-based access control (`access_control` in the config).
    pub policy: Option<crate::access::TagPolicy>,
    pub store: Arc<AuthStore>,
    pub tokens: TokenIssuer,
    pub providers: Vec<Provider>,
    /// `(provider, id)` of the identities that get the admin role.
    pub admins: Vec<(String, String)>,
    pub limiter: LoginLimiter,
    /// Pending device-code logins (terminals), normally kept in `store`
    /// so that every replica sees them.
    pub device: DeviceFlow,
}

impl std::fmt::Debug for MultiUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiUser")
            .field(
                "providers",
                &self.providers.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e.status() {
            401 => ApiError::Unauthorized {
                detail: message,
                challenge: false,
            },
            403 => ApiError::Forbidden(message),
            404 => ApiError::NotFound(message),
            409 => ApiError::Conflict(message),
            400 => ApiError::BadRequest(message),
            _ => ApiError::Internal(message),
        }
    }
}

impl MultiUser {
    /// The caller's name at the access policy's provider, and whether it
    /// is a service (named by its uuid). Read from the credentials, not the
    /// database.
    pub fn identity_for_policy(&self, access: &Access) -> Option<(String, bool)> {
        let (Access::User(c), Some(policy)) = (access, &self.policy) else {
            return None;
        };
        let id = c
            .identities
            .iter()
            .find(|(provider, _)| *provider == policy.provider)
            .map(|(_, id)| id.clone());
        match (id, c.service) {
            (Some(id), _) => Some((id, false)),
            (None, true) => Some((c.principal.to_string(), true)),
            // A user with no identity at the policy's provider holds only
            // the public tags.
            (None, false) => None,
        }
    }

    /// The caller behind an API key.
    ///
    /// # Errors
    /// 401 for an unknown, malformed or expired key.
    pub fn caller_from_api_key(&self, secret: &str) -> Result<Access, ApiError> {
        let (principal, key, scopes) = self.store.authenticate_api_key(secret)?;
        Ok(Access::User(Arc::new(Caller {
            principal: principal.uuid,
            scopes,
            api_key: Some(key.first_eight.clone()),
            access_tags: key.access_tags.clone(),
            identities: principal
                .identities
                .iter()
                .map(|i| (i.provider.clone(), i.id.clone()))
                .collect(),
            service: principal.principal_type == tiled_auth::PrincipalType::Service,
        })))
    }

    /// The caller behind a bearer access token.
    ///
    /// # Errors
    /// 401 for an expired or invalid token.
    pub fn caller_from_token(&self, token: &str) -> Result<Access, ApiError> {
        let claims = self.tokens.verify_access(token)?;
        let principal = claims.principal()?;
        Ok(Access::User(Arc::new(Caller {
            principal,
            scopes: claims.scp.clone(),
            api_key: None,
            access_tags: None,
            identities: claims
                .ids
                .iter()
                .map(|i| (i.idp.clone(), i.id.clone()))
                .collect(),
            service: claims.sub_typ == "service",
        })))
    }

    /// The `authentication` section of the about document.
    pub fn about(&self, base: &str, required: bool) -> Value {
        let providers: Vec<Value> = self
            .providers
            .iter()
            .map(|p| match &p.kind {
                ProviderKind::Password(_) => json!({
                    "provider": p.name,
                    "mode": "internal",
                    "links": {"auth_endpoint": format!("{base}/auth/provider/{}/token", p.name)},
                    "confirmation_message": null,
                }),
                ProviderKind::Oidc(oidc) => crate::oidc::about_entry(base, &p.name, oidc),
            })
            .collect();
        json!({
            "required": required,
            "providers": providers,
            "links": {
                "whoami": format!("{base}/auth/whoami"),
                "apikey": format!("{base}/auth/apikey"),
                "refresh_session": format!("{base}/auth/session/refresh"),
                "revoke_session": format!("{base}/auth/session/revoke/{{session_id}}"),
                "logout": format!("{base}/auth/logout"),
            },
        })
    }
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn json_body(req: &Request) -> Result<Value, ApiError> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::Unprocessable(format!("invalid JSON body: {e}")))
}

pub(crate) fn client_ip(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .unwrap_or("")
        .trim()
        .to_string()
}

fn caller(access: &Access) -> Result<&Caller, ApiError> {
    match access {
        Access::User(c) => Ok(c),
        _ => Err(ApiError::Unauthorized {
            detail: "Not authenticated".into(),
            challenge: true,
        }),
    }
}

fn refresh_token(req: &Request) -> Result<String, ApiError> {
    json_body(req)?
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::Unprocessable("give the refresh_token".into()))
}

/// `/api/v1/auth/...` (runs on a blocking thread: the store is
/// synchronous).
///
/// # Errors
/// As upstream: 401 for bad credentials or expired sessions, 403 for
/// scopes beyond the principal's, 404 for unknown routes.
pub fn route(
    app: &App,
    req: &Request,
    rest: &[String],
    access: &Access,
) -> Result<Response, ApiError> {
    let mu = app
        .config
        .auth
        .multi_user
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("Not Found".into()))?;
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (parts.as_slice(), &req.method) {
        (["provider", name, "token"], &Method::POST) => {
            let provider = provider(mu, name)?;
            match &provider.kind {
                _ if is_json(&req.headers) => poll_device_code(mu, req, provider),
                ProviderKind::Password(authenticator) => login(mu, req, provider, authenticator),
                ProviderKind::Oidc(_) => Err(ApiError::BadRequest(format!(
                    "Provider {} logs in through OpenID Connect: there is no password grant. \
                     Log in with the device-code flow (POST .../authorize).",
                    provider.name
                ))),
            }
        }
        (["provider", name, "authorize"], &Method::POST) => {
            let provider = provider(mu, name)?;
            match &provider.kind {
                ProviderKind::Password(_) => start_device_code(mu, req, provider),
                ProviderKind::Oidc(oidc) => crate::oidc::start_device_code(mu, req, provider, oidc),
            }
        }
        (["provider", name, "authorize"], &Method::GET | &Method::HEAD) => {
            let provider = provider(mu, name)?;
            match &provider.kind {
                ProviderKind::Oidc(oidc) => crate::oidc::authorize_redirect(req, provider, oidc),
                ProviderKind::Password(_) => Err(ApiError::NotFound("Not Found".into())),
            }
        }
        (["provider", name, "code"], &Method::GET | &Method::HEAD) => {
            let provider = provider(mu, name)?;
            match &provider.kind {
                ProviderKind::Oidc(oidc) => crate::oidc::auth_code(mu, req, provider, oidc),
                ProviderKind::Password(_) => Err(ApiError::NotFound("Not Found".into())),
            }
        }
        (["provider", name, "device_code"], &Method::GET | &Method::HEAD) => {
            let provider = provider(mu, name)?;
            match &provider.kind {
                ProviderKind::Password(_) => {
                    let code = req.params.get("code").unwrap_or("");
                    Ok(html(
                        StatusCode::OK,
                        &device_form(&provider.name, code, None),
                    ))
                }
                ProviderKind::Oidc(_) => Ok(crate::oidc::device_code_form(req, provider)),
            }
        }
        (["provider", name, "device_code"], &Method::POST) => {
            let provider = provider(mu, name)?;
            match &provider.kind {
                ProviderKind::Password(authenticator) => {
                    approve_device_code(mu, req, provider, authenticator)
                }
                ProviderKind::Oidc(oidc) => {
                    Ok(crate::oidc::approve_device_code(mu, req, provider, oidc))
                }
            }
        }
        (["principal"], &Method::GET) => {
            require_scope(access, "read:principals")?;
            let page = |names: [&str; 2], default: u64| -> Result<u64, ApiError> {
                match names.iter().find_map(|n| req.params.get(n)) {
                    None => Ok(default),
                    Some(v) => v.trim().parse::<u64>().map_err(|_| {
                        ApiError::Unprocessable(format!(
                            "{} must be a non-negative integer, not {v:?}",
                            names[0]
                        ))
                    }),
                }
            };
            let offset = page(["page[offset]", "offset"], 0)?;
            let limit = page(["page[limit]", "limit"], DEFAULT_PRINCIPAL_PAGE)?;
            if limit > MAX_PRINCIPAL_PAGE {
                return Err(ApiError::Unprocessable(format!(
                    "page[limit] must be at most {MAX_PRINCIPAL_PAGE}"
                )));
            }
            let principals = mu
                .store
                .list_principals(offset, limit)?
                .iter()
                .map(|p| mu.store.whoami(p.uuid))
                .collect::<Result<Vec<_>, _>>()?;
            document(&req.headers, &principals)
        }
        (["principal"], &Method::POST) => {
            require_scope(access, "write:principals")?;
            let role = req
                .params
                .get("role")
                .filter(|r| !r.is_empty())
                .ok_or_else(|| ApiError::Unprocessable("give the role (?role=user)".into()))?;
            let principal = mu.store.create_service_principal(role)?;
            tracing::info!(principal = %principal.uuid, role, "created service principal");
            document(&req.headers, &mu.store.whoami(principal.uuid)?)
        }
        (["principal", uuid], &Method::GET) => {
            require_scope(access, "read:principals")?;
            document(&req.headers, &mu.store.whoami(path_uuid(uuid)?)?)
        }
        (["principal", uuid, "apikey"], &Method::POST) => {
            require_scope(access, "admin:apikeys")?;
            let uuid = path_uuid(uuid)?;
            if mu.store.principal(uuid)?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "Principal {uuid} does not exist or insufficient permissions."
                )));
            }
            create_api_key(mu, req, uuid)
        }
        (["principal", uuid, "apikey"], &Method::DELETE) => {
            require_scope(access, "admin:apikeys")?;
            let uuid = path_uuid(uuid)?;
            let first = req
                .params
                .get("first_eight")
                .ok_or_else(|| ApiError::Unprocessable("give first_eight".into()))?;
            mu.store.revoke_api_key(uuid, first)?;
            Ok(no_content())
        }
        (["session", "refresh"], &Method::POST) => {
            let claims = mu.tokens.verify_refresh(&refresh_token(req)?)?;
            let sid = tiled_auth::parse_uuid(&claims.sid)?;
            let session = mu.store.refresh_session(
                sid,
                mu.tokens.refresh_max_age,
                mu.tokens.session_max_age,
            )?;
            let principal =
                mu.store
                    .principal(session.principal)?
                    .ok_or_else(|| ApiError::Unauthorized {
                        detail: tiled_auth::tokens::SESSION_EXPIRED.into(),
                        challenge: false,
                    })?;
            document(&req.headers, &mu.tokens.refreshed(&principal, &session)?)
        }
        (["session", "revoke"], &Method::POST) => {
            let claims = mu.tokens.verify_refresh(&refresh_token(req)?)?;
            mu.store
                .revoke_session(tiled_auth::parse_uuid(&claims.sid)?)?;
            Ok(no_content())
        }
        (["session", "revoke", sid], &Method::DELETE) => {
            let who = caller(access)?;
            let sid: Uuid = tiled_auth::parse_uuid(sid)?;
            let owned = mu
                .store
                .session(sid)?
                .is_some_and(|s| s.principal == who.principal);
            if !owned {
                return Err(ApiError::NotFound("No such session".into()));
            }
            mu.store.revoke_session(sid)?;
            Ok(no_content())
        }
        (["whoami"], &Method::GET) => match access {
            Access::User(c) => document(&req.headers, &mu.store.whoami(c.principal)?),
            _ => document(&req.headers, &Value::Null),
        },
        (["logout"], &Method::POST) => document(&req.headers, &json!({})),
        (["apikey"], &Method::POST) => {
            let who = caller(access)?;
            if !who.scopes.iter().any(|s| s == "apikeys") {
                return Err(ApiError::Forbidden(
                    "Not enough permissions. Requires scopes ['apikeys'].".into(),
                ));
            }
            create_api_key(mu, req, who.principal)
        }
        (["apikey"], &Method::GET) => {
            let who = caller(access)?;
            let first = who.api_key.as_ref().ok_or_else(|| ApiError::Unauthorized {
                detail: "No API key was used for this request.".into(),
                challenge: false,
            })?;
            let key = mu
                .store
                .api_keys(who.principal)?
                .into_iter()
                .find(|k| &k.first_eight == first)
                .ok_or_else(|| ApiError::NotFound("No such API key".into()))?;
            document(&req.headers, &key.to_json())
        }
        (["apikey"], &Method::DELETE) => {
            let who = caller(access)?;
            let first = req
                .params
                .get("first_eight")
                .ok_or_else(|| ApiError::Unprocessable("give first_eight".into()))?;
            mu.store.revoke_api_key(who.principal, first)?;
            Ok(no_content())
        }
        _ => Err(ApiError::NotFound("Not Found".into())),
    }
}

/// Principals listed per page by default (upstream's `DEFAULT_PAGE_SIZE`).
const DEFAULT_PRINCIPAL_PAGE: u64 = 100;
/// At most this many principals per page (upstream's `MAX_PAGE_SIZE`).
const MAX_PRINCIPAL_PAGE: u64 = 300;
/// The OAuth2 device-code grant (RFC 8628) the client polls with.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn provider<'a>(mu: &'a MultiUser, name: &str) -> Result<&'a Provider, ApiError> {
    mu.providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("No such provider: {name}")))
}

/// Whether the body is JSON (device-code polling) rather than a form
/// (password grant).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || v.ends_with("+json")
        })
}

/// The caller, if it holds `scope`: anonymous (or expired) credentials get
/// 401, so the client refreshes; a principal without it 403 naming it.
fn require_scope<'a>(access: &'a Access, scope: &str) -> Result<&'a Caller, ApiError> {
    let who = match access {
        Access::User(c) => c,
        _ => {
            return Err(ApiError::Unauthorized {
                detail: format!(
                    "Not enough permissions. Requires scopes ['{scope}']. Request had scopes []"
                ),
                challenge: true,
            });
        }
    };
    if !who.scopes.iter().any(|s| s == scope) {
        return Err(ApiError::Forbidden(format!(
            "Not enough permissions. Requires scopes ['{scope}']. Request had scopes {}",
            access.scope_list()
        )));
    }
    Ok(who)
}

/// A principal's UUID from the path (422, as upstream's validation, if it
/// is not one).
fn path_uuid(text: &str) -> Result<Uuid, ApiError> {
    tiled_auth::parse_uuid(text).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// `POST apikey` and `POST principal/{uuid}/apikey`: body `{"scopes",
/// "access_tags", "expires_in", "note"}` → the key with its secret.
fn create_api_key(mu: &MultiUser, req: &Request, principal: Uuid) -> Result<Response, ApiError> {
    let body = json_body(req)?;
    let strings = |k: &str| -> Result<Option<Vec<String>>, ApiError> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::Unprocessable(format!("{k} must be strings")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(ApiError::Unprocessable(format!(
                "{k} must be a list, got {other}"
            ))),
        }
    };
    let scopes = strings("scopes")?;
    let tags = strings("access_tags")?;
    let expires_in = body.get("expires_in").and_then(Value::as_f64);
    let note = body.get("note").and_then(Value::as_str).map(str::to_string);
    let (info, secret) = mu
        .store
        .create_api_key(principal, scopes, tags, expires_in, note)?;
    document(&req.headers, &info.to_json_with_secret(&secret))
}

/// A new session and its tokens (the token response's JSON) for identity
/// `(provider, id)`, creating the principal on first login; `tiled_admins`
/// get the admin role.
pub(crate) fn new_tokens(mu: &MultiUser, provider: &str, id: &str) -> Result<Value, ApiError> {
    let admin = mu.admins.iter().any(|(p, i)| p == provider && i == id);
    let principal = mu.store.principal_for_identity(provider, id, admin)?;
    let session = mu
        .store
        .create_session(principal.uuid, mu.tokens.refresh_max_age)?;
    let identity = Identity::new(provider, id);
    Ok(mu.tokens.issue(&principal, &identity, &session)?)
}

/// [`new_tokens`] as the response.
fn issue_tokens(
    mu: &MultiUser,
    req: &Request,
    provider: &str,
    id: &str,
) -> Result<Response, ApiError> {
    document(&req.headers, &new_tokens(mu, provider, id)?)
}

/// Check `username`/`password` with the provider, through the login
/// limiter. `Ok(None)` for wrong credentials (recorded as a failure).
///
/// # Errors
/// 403 while the limiter refuses this user name from this address.
fn check_password(
    mu: &MultiUser,
    provider: &Provider,
    authenticator: &dyn PasswordAuthenticator,
    username: &str,
    password: &str,
    ip: &str,
) -> Result<Option<String>, ApiError> {
    mu.limiter.check(username, ip)?;
    match authenticator.authenticate(username, password) {
        Some(id) => {
            mu.limiter.record_success(username, ip);
            Ok(Some(id))
        }
        None => {
            mu.limiter.record_failure(username, ip);
            // Never say which of the two was wrong; never log the password.
            tracing::info!(provider = provider.name, "failed login");
            Ok(None)
        }
    }
}

pub(crate) fn form(req: &Request) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(&req.body).into_owned().collect()
}

/// `POST /auth/provider/{p}/token` with a form: the OAuth2 password grant.
fn login(
    mu: &MultiUser,
    req: &Request,
    provider: &Provider,
    authenticator: &Arc<dyn PasswordAuthenticator>,
) -> Result<Response, ApiError> {
    let form = form(req);
    let username = form.get("username").map_or("", String::as_str);
    let password = form.get("password").map_or("", String::as_str);
    let ip = client_ip(&req.headers);
    let Some(id) = check_password(
        mu,
        provider,
        authenticator.as_ref(),
        username,
        password,
        &ip,
    )?
    else {
        return Err(ApiError::Unauthorized {
            detail: "Incorrect username or password".into(),
            challenge: false,
        });
    };
    issue_tokens(mu, req, &provider.name, &id)
}

/// `POST /auth/provider/{p}/authorize`: start a device-code login. The
/// client prints `authorization_uri` (our HTML form, with the user code
/// filled in) and `user_code`, then polls `verification_uri`.
fn start_device_code(
    mu: &MultiUser,
    req: &Request,
    provider: &Provider,
) -> Result<Response, ApiError> {
    let started = mu.device.start(&provider.name)?;
    let prefix = format!("{}/auth/provider/{}", req.base, provider.name);
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", &started.user_code)
        .finish();
    document(
        &req.headers,
        &json!({
            "authorization_uri": format!("{prefix}/device_code?{query}"),
            "verification_uri": format!("{prefix}/token"),
            "interval": started.interval,
            "device_code": started.device_code,
            "expires_in": started.expires_in,
            "user_code": started.user_code,
        }),
    )
}

/// `POST /auth/provider/{p}/token` with JSON `{"device_code", "grant_type"}`:
/// 400 `{"detail": {"error": "authorization_pending"}}` until approved,
/// then the tokens (once); 404 for unknown or expired codes.
fn poll_device_code(
    mu: &MultiUser,
    req: &Request,
    provider: &Provider,
) -> Result<Response, ApiError> {
    let body = json_body(req)?;
    if let Some(grant) = body.get("grant_type")
        && grant.as_str() != Some(DEVICE_CODE_GRANT)
    {
        return Err(ApiError::Unprocessable(format!(
            "grant_type must be {DEVICE_CODE_GRANT:?} (or post the password grant as a form)"
        )));
    }
    let code = body
        .get("device_code")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::Unprocessable("give the device_code".into()))?;
    let code = code.trim();
    if code.is_empty() || code.len() % 2 != 0 || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::Unauthorized {
            detail: "Invalid device code".into(),
            challenge: false,
        });
    }
    match mu.device.poll(code) {
        DevicePoll::Pending => {
            let body = json!({"detail": {"error": "authorization_pending"}});
            Ok((
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response())
        }
        DevicePoll::Approved(identity) if identity.provider == provider.name => {
            issue_tokens(mu, req, &identity.provider, &identity.id)
        }
        DevicePoll::Approved(_) | DevicePoll::Expired | DevicePoll::Unknown => Err(
            ApiError::NotFound("No such device_code. The pending request may have expired.".into()),
        ),
    }
}

/// `POST /auth/provider/{p}/device_code` (form `user_code`, `username`,
/// `password`): approve a pending device-code login. Answers HTML.
fn approve_device_code(
    mu: &MultiUser,
    req: &Request,
    provider: &Provider,
    authenticator: &Arc<dyn PasswordAuthenticator>,
) -> Result<Response, ApiError> {
    let form = form(req);
    let user_code = form
        .get("user_code")
        .or_else(|| form.get("code"))
        .map_or("", String::as_str);
    let username = form.get("username").map_or("", String::as_str);
    let password = form.get("password").map_or("", String::as_str);
    let ip = client_ip(&req.headers);
    let again = |status: StatusCode, message: &str| {
        Ok(html(
            status,
            &device_form(&provider.name, user_code, Some(message)),
        ))
    };
    if let Err(e) = mu.limiter.check(username, &ip) {
        return again(StatusCode::FORBIDDEN, &e.to_string());
    }
    // The user code first, so a wrong one tells nothing about passwords.
    if mu.device.provider_of(user_code).as_deref() != Some(provider.name.as_str()) {
        mu.limiter.record_failure(username, &ip);
        return again(
            StatusCode::UNAUTHORIZED,
            "Invalid user code. It may have been mistyped, or the pending request may have expired.",
        );
    }
    let id = match check_password(
        mu,
        provider,
        authenticator.as_ref(),
        username,
        password,
        &ip,
    ) {
        Ok(Some(id)) => id,
        Ok(None) => {
            return again(StatusCode::UNAUTHORIZED, "Incorrect username or password");
        }
        Err(e) => return again(StatusCode::FORBIDDEN, &e.to_string()),
    };
    if let Err(e) = mu.device.approve(user_code, &id) {
        return again(StatusCode::UNAUTHORIZED, &e.to_string());
    }
    tracing::info!(provider = provider.name, "device-code login approved");
    Ok(html(
        StatusCode::OK,
        &page(
            "Logged in",
            "<p class=\"ok\">Success. You may close this page; your terminal will be logged in \
             within a few seconds.</p>",
        ),
    ))
}

pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A small self-contained HTML page (`body` is trusted markup).
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Tiled: {title}</title><style>\
         body{{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}}\
         label{{display:block;margin-top:1em}}input{{width:100%;padding:.4em;box-sizing:border-box}}\
         button{{margin-top:1.5em;padding:.5em 1.5em}}.error{{color:#b00}}.ok{{color:#070}}\
         </style></head><body><h1>Tiled: {title}</h1>{body}</body></html>\n",
        title = escape_html(title),
    )
}

/// The form where the user approves a terminal's login.
fn device_form(provider: &str, code: &str, message: Option<&str>) -> String {
    let message = message
        .map(|m| format!("<p class=\"error\">{}</p>", escape_html(m)))
        .unwrap_or_default();
    page(
        "log in a terminal",
        &format!(
            "<p>Enter the code your terminal shows and your {provider} username and \
             password.</p>{message}\
             <form method=\"post\" action=\"device_code\">\
             <label>Code <input name=\"user_code\" value=\"{code}\" required \
             autocomplete=\"off\" autocapitalize=\"characters\"></label>\
             <label>Username <input name=\"username\" required autocomplete=\"username\"></label>\
             <label>Password <input name=\"password\" type=\"password\" required \
             autocomplete=\"current-password\"></label>\
             <button type=\"submit\">Log in</button></form>",
            provider = escape_html(provider),
            code = escape_html(code),
        ),
    )
}

/// An HTML response that may not be framed, cached or load anything.
pub(crate) fn html(status: StatusCode, body: &str) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether the request carries upstream's CSRF cookie.
pub fn has_csrf_cookie(request_headers: &HeaderMap) -> bool {
    crate::auth::cookie(request_headers, "tiled_csrf").is_some()
}

/// Set upstream's CSRF cookie on a response (the multi-user client reads
/// it before refreshing or revoking).
pub fn set_csrf_cookie(response: &mut Response) {
    let token: [u8; 32] = rand::random();
    let value: String = token.iter().map(|b| format!("{b:02x}")).collect();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "tiled_csrf={value}; HttpOnly; Path=/; SameSite=lax"
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
        let form = device_form("toy", "\"><script>", Some("<b>"));
        assert!(!form.contains("<script>") && !form.contains("<b>"));
        assert!(form.contains("value=\"&quot;&gt;&lt;script&gt;\""));
    }

    #[test]
    fn json_bodies_are_told_from_forms() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h));
    }

    #[test]
    fn scopes_are_required() {
        let user = Access::User(Arc::new(Caller {
            principal: Uuid::nil(),
            scopes: vec!["read:metadata".into()],
            api_key: None,
            access_tags: None,
            identities: Vec::new(),
            service: false,
        }));
        let e = require_scope(&user, "read:principals").unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.to_string().contains("read:principals"));
        let e = require_scope(&Access::Read, "read:principals").unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(require_scope(&user, "read:metadata").is_ok());
    }
}
