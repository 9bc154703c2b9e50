//! Authentication: single-user (one API key, optionally anonymous
//! reading) or multi-user ([`crate::multi_user`]: API keys and bearer
//! tokens of principals with scopes).
//!
//! Credentials are looked for, in upstream's order, in the `api_key` query
//! parameter, an `Authorization: Apikey <key>` header, and the
//! `tiled_api_key` cookie. Keys are compared in constant time.

use axum::http::HeaderMap;
use axum::http::header;

use crate::error::ApiError;
use crate::params::Params;

/// How callers are authenticated.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The single user's API key (unused in multi-user mode).
    pub api_key: String,
    /// Whether callers without a key may read.
    pub allow_anonymous: bool,
    /// Login providers, sessions and per-principal API keys; `None` for
    /// single-user mode.
    pub multi_user: Option<std::sync::Arc<crate::multi_user::MultiUser>>,
}

/// An authenticated principal (multi-user mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: tiled_auth::Uuid,
    /// What this request may do (a key's scopes, or the token's).
    pub scopes: Vec<String>,
    /// The first eight characters of the API key used, if one was.
    pub api_key: Option<String>,
    /// The access tags the API key used is restricted to (`None`: not
    /// restricted, or no key).
    pub access_tags: Option<Vec<String>>,
    /// The principal's identities as `(provider, id)` (from the token's
    /// claims, or the principal an API key belongs to), so the access
    /// policy names the caller without another database query.
    pub identities: Vec<(String, String)>,
    /// Whether the principal is a service.
    pub service: bool,
}

/// What a caller may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anonymous: read metadata and data.
    Read,
    /// Holder of the single-user API key: everything.
    Full,
    /// A principal with scopes.
    User(std::sync::Arc<Caller>),
}

impl Access {
    /// Whether this caller holds `scope`.
    pub fn has(&self, scope: &str) -> bool {
        match self {
            Access::Full => true,
            Access::Read => matches!(scope, "read:metadata" | "read:data"),
            Access::User(c) => c.scopes.iter().any(|s| s == scope),
        }
    }

    /// The scopes to name in a refusal.
    pub fn scope_list(&self) -> String {
        let scopes: Vec<String> = match self {
            Access::Full => vec!["all".into()],
            Access::Read => vec!["read:metadata".into(), "read:data".into()],
            Access::User(c) => c.scopes.clone(),
        };
        let quoted: Vec<String> = scopes.iter().map(|s| format!("'{s}'")).collect();
        format!("[{}]", quoted.join(", "))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret (keys have a fixed length); contents are.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl AuthConfig {
    /// Decide who the caller is.
    ///
    /// # Errors
    /// 401 for a wrong key or (without anonymous access) no key; 400 for an
    /// `Authorization` header of an unknown scheme.
    pub fn authenticate(&self, headers: &HeaderMap, params: &Params) -> Result<Access, ApiError> {
        let mut presented: Option<String> = params.get("api_key").map(str::to_string);
        let mut bearer: Option<String> = None;
        if presented.is_none()
            && let Some(value) = headers.get(header::AUTHORIZATION)
        {
            let value = value.to_str().unwrap_or("");
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            if scheme.eq_ignore_ascii_case("apikey") {
                presented = Some(rest.trim().to_string());
            } else if scheme.eq_ignore_ascii_case("bearer") {
                bearer = Some(rest.trim().to_string());
            } else {
                return Err(ApiError::BadRequest(
                    "Authorization header must include the authorization type \
                     followed by a space and then the secret, as in \
                     'Bearer SECRET' or 'Apikey SECRET'."
                        .into(),
                ));
            }
        }
        if presented.is_none() && bearer.is_none() {
            presented = cookie(headers, "tiled_api_key").map(str::to_string);
        }
        if let Some(mu) = &self.multi_user {
            return match (presented, bearer) {
                (Some(key), _) => mu.caller_from_api_key(&key),
                (None, Some(token)) => mu.caller_from_token(&token),
                (None, None) if self.allow_anonymous => Ok(Access::Read),
                (None, None) => Err(ApiError::Unauthorized {
                    detail: "Not enough permissions. Requires scopes ['read:metadata']. \
                             Request had scopes []"
                        .into(),
                    challenge: true,
                }),
            };
        }
        if bearer.is_some() {
            return Err(ApiError::Unauthorized {
                detail: "Could not validate credentials: this server has no \
                         login providers; use an API key"
                    .into(),
                challenge: false,
            });
        }
        match presented {
            Some(key) if constant_time_eq(key.as_bytes(), self.api_key.as_bytes()) => {
                Ok(Access::Full)
            }
            Some(_) => Err(ApiError::Unauthorized {
                detail: "Invalid API key".into(),
                challenge: false,
            }),
            None if self.allow_anonymous => Ok(Access::Read),
            None => Err(ApiError::Unauthorized {
                detail: "Not enough permissions. Requires scopes ['read:metadata']. \
                         Request had scopes []"
                    .into(),
                challenge: true,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cfg(anon: bool) -> AuthConfig {
        AuthConfig {
            api_key: "secret".into(),
            allow_anonymous: anon,
            multi_user: None,
        }
    }

    #[test]
    fn every_credential_location() {
        let none = HeaderMap::new();
        let q = Params::parse(Some("api_key=secret"));
        assert_eq!(cfg(false).authenticate(&none, &q).unwrap(), Access::Full);
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("apikey secret"),
        );
        assert_eq!(
            cfg(false).authenticate(&h, &Params::default()).unwrap(),
            Access::Full
        );
        let mut c = HeaderMap::new();
        c.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; tiled_api_key=secret"),
        );
        assert_eq!(
            cfg(false).authenticate(&c, &Params::default()).unwrap(),
            Access::Full
        );
    }

    #[test]
    fn refusals() {
        let none = HeaderMap::new();
        let wrong = Params::parse(Some("api_key=nope"));
        assert_eq!(
            cfg(true).authenticate(&none, &wrong).unwrap_err().status(),
            401
        );
        assert_eq!(
            cfg(false)
                .authenticate(&none, &Params::default())
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(
            cfg(true).authenticate(&none, &Params::default()).unwrap(),
            Access::Read
        );
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(
            cfg(true)
                .authenticate(&h, &Params::default())
                .unwrap_err()
                .status(),
            400
        );
    }
}
