//! Single-user authentication: one API key, optionally anonymous reading.
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
    /// The single user's API key.
    pub api_key: String,
    /// Whether callers without a key may read.
    pub allow_anonymous: bool,
}

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anonymous: read metadata and data.
    Read,
    /// Holder of the API key: everything.
    Full,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret (keys have a fixed length); contents are.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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
        if presented.is_none()
            && let Some(value) = headers.get(header::AUTHORIZATION)
        {
            let value = value.to_str().unwrap_or("");
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            if scheme.eq_ignore_ascii_case("apikey") {
                presented = Some(rest.trim().to_string());
            } else if scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::Unauthorized {
                    detail: "Could not validate credentials: this server has no \
                             login providers; use an API key"
                        .into(),
                    challenge: false,
                });
            } else {
                return Err(ApiError::BadRequest(
                    "Authorization header must include the authorization type \
                     followed by a space and then the secret, as in \
                     'Bearer SECRET' or 'Apikey SECRET'."
                        .into(),
                ));
            }
        }
        if presented.is_none() {
            presented = cookie(headers, "tiled_api_key").map(str::to_string);
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
