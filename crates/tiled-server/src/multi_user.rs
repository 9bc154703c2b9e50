//! Multi-user authentication over HTTP (spec §9.3): password providers,
//! JWT sessions with refresh and revocation, API keys, `whoami`. The
//! state (principals, sessions, keys) lives in `tiled_auth`'s database;
//! this module maps its calls to upstream's routes under `/api/v1/auth`.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tiled_auth::{
    AuthError, AuthStore, Identity, LoginLimiter, PasswordAuthenticator, TokenIssuer, Uuid,
};

use crate::auth::{Access, Caller};
use crate::error::ApiError;
use crate::respond::document;
use crate::{App, Request};

/// One login provider (upstream's `authentication.providers[*]`).
pub struct Provider {
    /// The name in URLs (`/auth/provider/{name}/token`).
    pub name: String,
    pub authenticator: Arc<dyn PasswordAuthenticator>,
}

/// What a multi-user server authenticates with.
pub struct MultiUser {
    pub store: AuthStore,
    pub tokens: TokenIssuer,
    pub providers: Vec<Provider>,
    /// `(provider, id)` of the identities that get the admin role.
    pub admins: Vec<(String, String)>,
    pub limiter: LoginLimiter,
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
        })))
    }

    /// The `authentication` section of the about document.
    pub fn about(&self, base: &str, required: bool) -> Value {
        let providers: Vec<Value> = self
            .providers
            .iter()
            .map(|p| {
                json!({
                    "provider": p.name,
                    "mode": "internal",
                    "links": {"auth_endpoint": format!("{base}/auth/provider/{}/token", p.name)},
                    "confirmation_message": null,
                })
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

fn client_ip(headers: &HeaderMap) -> String {
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
        (["provider", name, "token"], &Method::POST) => login(mu, req, name),
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
            let body = json_body(req)?;
            let strings = |k: &str| -> Result<Option<Vec<String>>, ApiError> {
                match body.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| {
                            v.as_str().map(str::to_string).ok_or_else(|| {
                                ApiError::Unprocessable(format!("{k} must be strings"))
                            })
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
            let (info, secret) =
                mu.store
                    .create_api_key(who.principal, scopes, tags, expires_in, note)?;
            document(&req.headers, &info.to_json_with_secret(&secret))
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

/// `POST /auth/provider/{p}/token`: the OAuth2 password grant.
fn login(mu: &MultiUser, req: &Request, name: &str) -> Result<Response, ApiError> {
    let provider = mu
        .providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("No such provider: {name}")))?;
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&req.body).into_owned().collect();
    let username = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let ip = client_ip(&req.headers);
    mu.limiter.check(&username, &ip)?;
    let Some(id) = provider.authenticator.authenticate(&username, &password) else {
        mu.limiter.record_failure(&username, &ip);
        // Never say which of the two was wrong; never log the password.
        tracing::info!(provider = name, "failed login");
        return Err(ApiError::Unauthorized {
            detail: "Incorrect username or password".into(),
            challenge: false,
        });
    };
    mu.limiter.record_success(&username, &ip);
    let admin = mu
        .admins
        .iter()
        .any(|(p, i)| p == &provider.name && i == &id);
    let principal = mu
        .store
        .principal_for_identity(&provider.name, &id, admin)?;
    let session = mu
        .store
        .create_session(principal.uuid, mu.tokens.refresh_max_age)?;
    let identity = Identity::new(provider.name.clone(), id);
    let tokens = mu.tokens.issue(&principal, &identity, &session)?;
    document(&req.headers, &tokens)
}

/// Whether the request carries upstream's CSRF cookie.
pub fn has_csrf_cookie(request_headers: &HeaderMap) -> bool {
    request_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|kv| kv.trim().starts_with("tiled_csrf=")))
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
