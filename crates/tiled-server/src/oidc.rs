//! OpenID Connect providers over HTTP (upstream's `OIDCAuthenticator`
//! with `add_external_routes`): the routes under
//! `/api/v1/auth/provider/{p}/...` and the HTTP client that reaches the
//! provider. The OIDC logic itself (discovery, keys, code exchange, id_token
//! checks) is `tiled_auth::oidc`.
//!
//! Two ways in, both ending in a session for the identity `(p, id)` where
//! `id` is the id_token's `user_id_claim` (default `sub`):
//! - a browser: `GET authorize` redirects to the provider's login page with
//!   `redirect_uri = {base}/auth/provider/{p}/code`; the provider sends the
//!   browser back to `GET code?code=...`, which answers the tokens (or
//!   redirects to `redirect_on_success` with them in the query);
//! - a terminal (the Python client's `device_code_grant` without a
//!   `client_id`): `POST authorize` starts a device-code login whose
//!   `authorization_uri` is the provider's login page with
//!   `redirect_uri = {base}/auth/provider/{p}/device_code`; the provider
//!   sends the browser back there, the user types the terminal's code into
//!   the form, and `POST device_code` exchanges the OIDC code and approves
//!   the terminal, which was polling `POST token`.
//!
//! Requests to the provider run on the server's runtime with a 10 s limit
//! and a 1 MiB cap on answers; a provider that is down makes logins fail
//! with 502 and a JSON (or, for the browser form, HTML) message. Nothing is
//! fetched at start-up except, in the background, the discovery document
//! (see [`discover_in_background`]), so a provider that is down never stops
//! the server from starting.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tiled_auth::oidc::{HttpReply, OidcError, OidcHttp, OidcProvider};

use crate::Request;
use crate::error::ApiError;
use crate::multi_user::{
    MultiUser, Provider, ProviderKind, client_ip, escape_html, form, html, new_tokens, page,
};
use crate::respond::document;

/// The time limit of one request to the provider.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the provider.
pub const MAX_PROVIDER_ANSWER: usize = 1 << 20;
/// The scopes of a browser login (upstream's, sorted).
const BROWSER_SCOPES: &str = "offline_access openid";
/// The detail of a failed login (upstream's).
const AUTHENTICATION_FAILURE: &str = "Authentication failure";

/// [`OidcHttp`] over reqwest, on the server's tokio runtime. Callers block
/// (they are on the blocking pool, as every `/auth` route is).
pub struct HttpTransport {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport").finish_non_exhaustive()
    }
}

/// A transport error with its causes (`error sending request: ... :
/// Connection refused`).
fn error_chain(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", PROVIDER_TIMEOUT.as_secs());
    }
    // The caller says which URL.
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let message = s.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = s.source();
    }
    text
}

impl HttpTransport {
    /// A client with the time limits above, using the current tokio
    /// runtime.
    ///
    /// # Errors
    /// Outside a tokio runtime, or if the HTTP client cannot be built.
    pub fn new() -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the OpenID Connect client needs a tokio runtime".to_string())?;
        let client = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .connect_timeout(PROVIDER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("tiled-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the OpenID Connect HTTP client: {e}"))?;
        Ok(HttpTransport { client, runtime })
    }

    fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpReply, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let reply = async {
                let mut response = request.send().await.map_err(error_chain)?;
                let status = response.status().as_u16();
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(error_chain)? {
                    if body.len() + chunk.len() > MAX_PROVIDER_ANSWER {
                        return Err(format!(
                            "the answer is larger than {MAX_PROVIDER_ANSWER} bytes"
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(HttpReply { status, body })
            }
            .await;
            let _ = tx.send(reply);
        });
        rx.recv_timeout(PROVIDER_TIMEOUT + Duration::from_secs(2))
            .map_err(|_| format!("no answer within {} s", PROVIDER_TIMEOUT.as_secs()))?
    }
}

impl OidcHttp for HttpTransport {
    fn get(&self, url: &str) -> Result<HttpReply, String> {
        self.send(
            self.client
                .get(url)
                .header(header::ACCEPT, "application/json"),
        )
    }

    fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
    ) -> Result<HttpReply, String> {
        let mut request = self
            .client
            .post(url)
            .header(header::ACCEPT, "application/json")
            .form(form);
        if let Some((user, password)) = basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        self.send(request)
    }
}

/// Fetch every OIDC provider's discovery document in the background, so
/// a misconfiguration shows in the log at start-up; a failure is logged and
/// the next login tries again. Call within the tokio runtime.
pub fn discover_in_background(mu: &MultiUser) {
    for p in &mu.providers {
        if let ProviderKind::Oidc(oidc) = &p.kind {
            let (name, oidc) = (p.name.clone(), oidc.clone());
            tokio::task::spawn_blocking(move || {
                // The failure itself is logged by `discovery`.
                if oidc.discovery().is_err() {
                    tracing::warn!(
                        provider = name,
                        "OpenID Connect provider not usable yet; each login will try again"
                    );
                }
            });
        }
    }
}

/// `url` with `params` added to its query.
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// A 302 to `location` that no one caches.
fn found(location: &str) -> Result<Response, ApiError> {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        location
            .parse()
            .map_err(|_| ApiError::Internal(format!("bad redirect location {location:?}")))?,
    );
    headers.insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// An OIDC failure as an API error: 502 with the message when the provider
/// is unavailable, upstream's 401 "Authentication failure" otherwise (the
/// reason is logged, not told).
fn api_error(provider: &str, e: OidcError) -> ApiError {
    match e {
        OidcError::Unavailable(m) => ApiError::BadGateway(m),
        OidcError::Rejected(reason) => {
            tracing::warn!(provider, "OpenID Connect login failed: {reason}");
            ApiError::Unauthorized {
                detail: AUTHENTICATION_FAILURE.into(),
                challenge: false,
            }
        }
    }
}

/// `{base}/auth/provider/{p}/{route}`: where the provider sends the browser
/// back (register both `code` and `device_code` at the provider).
fn callback(req: &Request, provider: &Provider, route: &str) -> String {
    format!("{}/auth/provider/{}/{route}", req.base, provider.name)
}

/// `GET provider/{p}/authorize[?state=]`: send the browser to the provider's
/// login page.
pub(crate) fn authorize_redirect(
    req: &Request,
    provider: &Provider,
    oidc: &OidcProvider,
) -> Result<Response, ApiError> {
    let d = oidc.discovery().map_err(|e| api_error(&provider.name, e))?;
    let redirect_uri = callback(req, provider, "code");
    let mut params = vec![
        ("client_id", oidc.config().client_id.as_str()),
        ("response_type", "code"),
        ("scope", BROWSER_SCOPES),
        ("redirect_uri", redirect_uri.as_str()),
        ("prompt", "login"),
    ];
    if let Some(state) = req.params.get("state") {
        params.push(("state", state));
    }
    let location = with_query(&d.authorization_endpoint, &params);
    let mut response = axum::response::Redirect::temporary(&location).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `GET provider/{p}/code?code=...`: the provider's redirect after a browser
/// login. Answers the tokens (or redirects to `redirect_on_success` with
/// them); a failure is 401 (or a redirect to `redirect_on_failure`).
pub(crate) fn auth_code(
    mu: &MultiUser,
    req: &Request,
    provider: &Provider,
    oidc: &OidcProvider,
) -> Result<Response, ApiError> {
    let config = oidc.config();
    let code = req.params.get("code").unwrap_or("");
    let outcome = if let Some(error) = req.params.get("error") {
        Err(OidcError::Rejected(format!(
            "the provider answered {error}"
        )))
    } else {
        oidc.login(code, &callback(req, provider, "code"))
    };
    let id = match outcome {
        Ok(id) => id,
        Err(e) => {
            let e = api_error(&provider.name, e);
            return match &config.redirect_on_failure {
                Some(url) => found(url),
                None => Err(e),
            };
        }
    };
    tracing::info!(provider = provider.name, "OpenID Connect login");
    let tokens = new_tokens(mu, &provider.name, &id)?;
    let Some(url) = &config.redirect_on_success else {
        return document(&req.headers, &tokens);
    };
    let field = |path: &[&str]| -> String {
        let mut v = &tokens;
        for k in path {
            v = v.get(*k).unwrap_or(&Value::Null);
        }
        v.as_str().map(str::to_string).unwrap_or_default()
    };
    let (access, refresh) = (field(&["access_token"]), field(&["refresh_token"]));
    let (id, idp) = (field(&["identity", "id"]), field(&["identity", "provider"]));
    let principal = field(&["principal"]);
    let mut params = vec![
        ("access_token", access.as_str()),
        ("refresh_token", refresh.as_str()),
        ("identity.id", id.as_str()),
        ("identity.provider", idp.as_str()),
        ("principal", principal.as_str()),
    ];
    if let Some(state) = req.params.get("state") {
        params.push(("state", state));
    }
    found(&with_query(url, &params))
}

/// `POST provider/{p}/authorize`: start a device-code login whose browser
/// half goes through the provider.
pub(crate) fn start_device_code(
    mu: &MultiUser,
    req: &Request,
    provider: &Provider,
    oidc: &OidcProvider,
) -> Result<Response, ApiError> {
    let d = oidc.discovery().map_err(|e| api_error(&provider.name, e))?;
    let started = mu.device.start(&provider.name)?;
    let redirect_uri = callback(req, provider, "device_code");
    let authorization_uri = with_query(
        &d.authorization_endpoint,
        &[
            ("client_id", oidc.config().client_id.as_str()),
            ("response_type", "code"),
            ("scope", "openid"),
            ("redirect_uri", redirect_uri.as_str()),
        ],
    );
    document(
        &req.headers,
        &json!({
            "authorization_uri": authorization_uri,
            "verification_uri": callback(req, provider, "token"),
            "interval": started.interval,
            "device_code": started.device_code,
            "expires_in": started.expires_in,
            "user_code": started.user_code,
        }),
    )
}

/// The form where the user, back from the provider, types the terminal's
/// code; the provider's authorization `code` rides along.
fn user_code_form(provider: &str, code: &str, message: Option<&str>) -> String {
    let message = message
        .map(|m| format!("<p class=\"error\">{}</p>", escape_html(m)))
        .unwrap_or_default();
    let action = with_query("device_code", &[("code", code)]);
    page(
        "log in a terminal",
        &format!(
            "<p>You are logged in at {provider}. Enter the code your terminal shows to log \
             it in.</p>{message}\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"code\" value=\"{code}\">\
             <label>Code <input name=\"user_code\" required autofocus autocomplete=\"off\" \
             autocapitalize=\"characters\"></label>\
             <button type=\"submit\">Log in</button></form>",
            provider = escape_html(provider),
            action = escape_html(&action),
            code = escape_html(code),
        ),
    )
}

/// `GET provider/{p}/device_code?code=...`: the form.
pub(crate) fn device_code_form(req: &Request, provider: &Provider) -> Response {
    let code = req.params.get("code").unwrap_or("");
    html(StatusCode::OK, &user_code_form(&provider.name, code, None))
}

/// The limiter's key for wrong user codes from one address.
const USER_CODE_LIMIT_KEY: &str = "\u{0}oidc user code";

/// `POST provider/{p}/device_code` (form `user_code`, `code`): check the
/// user code, exchange the provider's code, approve the terminal. HTML.
pub(crate) fn approve_device_code(
    mu: &MultiUser,
    req: &Request,
    provider: &Provider,
    oidc: &OidcProvider,
) -> Response {
    let form = form(req);
    let user_code = form.get("user_code").map_or("", String::as_str);
    let code = form
        .get("code")
        .map(String::as_str)
        .filter(|c| !c.is_empty())
        .or_else(|| req.params.get("code"))
        .unwrap_or("");
    let ip = client_ip(&req.headers);
    let again = |status: StatusCode, message: &str| {
        html(status, &user_code_form(&provider.name, code, Some(message)))
    };
    if let Err(e) = mu.limiter.check(USER_CODE_LIMIT_KEY, &ip) {
        return again(StatusCode::FORBIDDEN, &e.to_string());
    }
    if mu.device.provider_of(user_code).as_deref() != Some(provider.name.as_str()) {
        mu.limiter.record_failure(USER_CODE_LIMIT_KEY, &ip);
        return again(
            StatusCode::UNAUTHORIZED,
            "Invalid user code. It may have been mistyped, or the pending request may have expired.",
        );
    }
    let id = match oidc.login(code, &callback(req, provider, "device_code")) {
        Ok(id) => id,
        Err(OidcError::Unavailable(m)) => {
            return html(
                StatusCode::BAD_GATEWAY,
                &page(
                    "login failed",
                    &format!("<p class=\"error\">{}</p>", escape_html(&m)),
                ),
            );
        }
        Err(OidcError::Rejected(reason)) => {
            tracing::warn!(
                provider = provider.name,
                "OpenID Connect login failed: {reason}"
            );
            return html(
                StatusCode::UNAUTHORIZED,
                &page(
                    "login failed",
                    "<p class=\"error\">The user code was correct but the login at the identity \
                     provider failed. Start again from your terminal; if it keeps failing, ask \
                     the administrator to look at the server's log.</p>",
                ),
            );
        }
    };
    if let Err(e) = mu.device.approve(user_code, &id) {
        return again(StatusCode::UNAUTHORIZED, &e.to_string());
    }
    tracing::info!(
        provider = provider.name,
        "device-code login approved through OpenID Connect"
    );
    html(
        StatusCode::OK,
        &page(
            "Logged in",
            "<p class=\"ok\">Success. You may close this page; your terminal will be logged in \
             within a few seconds.</p>",
        ),
    )
}

/// The `authentication.providers` entry of the about document for an OIDC
/// provider (upstream's external mode, without `client_id`/`token_endpoint`
/// in `links`, so clients use this server's device-code flow).
pub(crate) fn about_entry(base: &str, name: &str, oidc: &Arc<OidcProvider>) -> Value {
    json!({
        "provider": name,
        "mode": "external",
        "links": {"auth_endpoint": format!("{base}/auth/provider/{name}/authorize")},
        "confirmation_message": oidc.config().confirmation_message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_appended() {
        assert_eq!(
            with_query("https://idp/auth", &[("a", "b c"), ("r", "http://x/y?z")]),
            "https://idp/auth?a=b+c&r=http%3A%2F%2Fx%2Fy%3Fz"
        );
        assert_eq!(
            with_query("https://idp/auth?t=1", &[("a", "b")]),
            "https://idp/auth?t=1&a=b"
        );
    }

    #[test]
    fn the_user_code_form_escapes_the_code() {
        let form = user_code_form("p", "\"><script>", Some("<b>"));
        assert!(!form.contains("<script>") && !form.contains("<b>"));
        assert!(form.contains("name=\"code\" value=\"&quot;&gt;&lt;script&gt;\""));
        assert!(form.contains("action=\"device_code?code=%22%3E%3Cscript%3E\""));
    }
}
