//! The authentication database's rows as Rust types, and their wire JSON
//! (upstream's `schemas.Principal`, `APIKey`, `Session`, ...; spec §9.3).
//!
//! Wire conventions, as upstream's orjson writes them:
//! - principal and session UUIDs in JSON bodies are dashed
//!   (`"4125e0b2-...-..."`); tokens and the token response carry the
//!   dashless hex form ([`Uuid::simple`]);
//! - datetimes are ISO 8601 in UTC with microseconds and an explicit offset
//!   (`2025-01-02T03:04:05.123456+00:00`), which every Python
//!   `datetime.fromisoformat` parses.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AuthError;

/// Scopes of the default `user` role.
pub const USER_SCOPES: &[&str] = &[
    "read:metadata",
    "read:data",
    "write:metadata",
    "write:data",
    "create:node",
    "delete:node",
    "delete:revision",
    "register",
    "apikeys",
];

/// Scopes of the default `admin` role: the user's plus the administrative
/// ones.
pub const ADMIN_SCOPES: &[&str] = &[
    "read:metadata",
    "read:data",
    "write:metadata",
    "write:data",
    "create:node",
    "delete:node",
    "delete:revision",
    "register",
    "apikeys",
    "read:principals",
    "write:principals",
    "admin:apikeys",
    "metrics",
];

/// The meta-scope of an API key that confers its principal's scopes as they
/// are when the key is used.
pub const INHERIT: &str = "inherit";

/// A user (logs in through an identity provider) or a service (has only API
/// keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalType {
    /// A person, known by one or more identities.
    User,
    /// A service account, created by an admin, with API keys only.
    Service,
}

impl PrincipalType {
    /// `"user"` or `"service"`, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Service => "service",
        }
    }

    /// Parse the stored form.
    ///
    /// # Errors
    /// [`AuthError::Internal`] for anything else.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        match text {
            "user" => Ok(PrincipalType::User),
            "service" => Ok(PrincipalType::Service),
            other => Err(AuthError::Internal(format!(
                "unknown principal type {other:?}"
            ))),
        }
    }
}

/// How a principal logged in: an id at an identity provider.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The provider's name in the server config (`authentication.providers[].provider`).
    pub provider: String,
    /// The user's id at that provider (e.g. the username).
    pub id: String,
    /// When this identity last logged in.
    pub latest_login: Option<DateTime<Utc>>,
}

impl Identity {
    /// An identity not (yet) read from the database.
    pub fn new(provider: impl Into<String>, id: impl Into<String>) -> Self {
        Identity {
            provider: provider.into(),
            id: id.into(),
            latest_login: None,
        }
    }

    /// `{"id", "provider", "latest_login"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "provider": self.provider,
            "latest_login": self.latest_login.map(format_time),
        })
    }
}

/// A named set of scopes granted to principals.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    /// `user`, `admin`, or one an operator added.
    pub name: String,
    /// The scopes it grants.
    pub scopes: Vec<String>,
}

impl Role {
    /// `{"name", "scopes"}`.
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "scopes": self.scopes})
    }
}

/// A user or service, with its identities and roles.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// Its id everywhere (tokens' `sub`, routes' `{uuid}`).
    pub uuid: Uuid,
    /// User or service.
    pub principal_type: PrincipalType,
    /// How it logs in (empty for services).
    pub identities: Vec<Identity>,
    /// What it may do, in the order granted.
    pub roles: Vec<Role>,
    /// The latest login, session refresh or API-key use.
    pub latest_activity: Option<DateTime<Utc>>,
}

impl Principal {
    /// The union of its roles' scopes, sorted.
    pub fn scopes(&self) -> Vec<String> {
        self.roles
            .iter()
            .flat_map(|r| r.scopes.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Whether one of its roles grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.roles
            .iter()
            .any(|r| r.scopes.iter().any(|s| s == scope))
    }
}

/// What is known about an API key (never its secret).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyInfo {
    /// The first eight hex characters of the secret: how a key is named.
    pub first_eight: String,
    /// Whose key it is.
    pub principal: Uuid,
    /// When it stops working (`None`: never).
    pub expiration_time: Option<DateTime<Utc>>,
    /// Free text from its creator.
    pub note: Option<String>,
    /// The scopes it was given; `["inherit"]` when it inherits its
    /// principal's scopes at use time.
    pub scopes: Vec<String>,
    /// Access tags it is restricted to (`None`: no restriction).
    pub access_tags: Option<Vec<String>>,
    /// Its latest use.
    pub latest_activity: Option<DateTime<Utc>>,
    /// When it was made.
    pub time_created: DateTime<Utc>,
}

impl ApiKeyInfo {
    /// Whether it inherits its principal's scopes.
    pub fn inherits(&self) -> bool {
        self.scopes.iter().any(|s| s == INHERIT)
    }

    /// Upstream's `APIKey`: `{"first_eight", "expiration_time", "note",
    /// "scopes", "access_tags", "latest_activity"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "first_eight": self.first_eight,
            "expiration_time": self.expiration_time.map(format_time),
            "note": self.note,
            "scopes": self.scopes,
            "access_tags": self.access_tags,
            "latest_activity": self.latest_activity.map(format_time),
        })
    }

    /// Upstream's `APIKeyWithSecret`: [`ApiKeyInfo::to_json`] plus
    /// `"secret"`; answered once, when the key is made.
    pub fn to_json_with_secret(&self, secret: &str) -> Value {
        let mut v = self.to_json();
        if let Value::Object(m) = &mut v {
            m.insert("secret".into(), Value::String(secret.to_string()));
        }
        v
    }
}

/// A login: the chain of refresh tokens that came from one authentication.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// Its id (refresh tokens' `sid`, dashless).
    pub uuid: Uuid,
    /// Whose session it is.
    pub principal: Uuid,
    /// When the login happened.
    pub time_created: DateTime<Utc>,
    /// When it ends unless refreshed (sliding).
    pub expiration_time: DateTime<Utc>,
    /// The latest refresh.
    pub time_last_refreshed: Option<DateTime<Utc>>,
    /// Revoked sessions cannot be refreshed.
    pub revoked: bool,
    /// Authenticator-provided state, copied into access tokens.
    pub state: Value,
    /// How many times it was refreshed.
    pub refresh_count: i64,
}

impl Session {
    /// Upstream's `Session`: `{"uuid", "expiration_time", "revoked", "state"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "uuid": self.uuid.hyphenated().to_string(),
            "expiration_time": format_time(self.expiration_time),
            "revoked": self.revoked,
            "state": self.state,
        })
    }
}

/// A datetime as stored and sent: `2025-01-02T03:04:05.123456+00:00`.
///
/// Fixed width, so stored values also sort as text in time order.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Parse a datetime written by [`format_time`] (any RFC 3339 time works).
///
/// # Errors
/// [`AuthError::Internal`] if it does not parse.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, AuthError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AuthError::Internal(format!("bad stored time {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trip() {
        let t = Utc::now();
        let s = format_time(t);
        assert_eq!(s.len(), "2025-01-02T03:04:05.123456+00:00".len());
        let back = parse_time(&s).unwrap();
        assert!((back - t).num_microseconds().unwrap().abs() <= 1);
    }

    #[test]
    fn scopes_union_sorted() {
        let p = Principal {
            uuid: Uuid::new_v4(),
            principal_type: PrincipalType::User,
            identities: vec![],
            roles: vec![
                Role {
                    name: "user".into(),
                    scopes: USER_SCOPES.iter().map(|s| s.to_string()).collect(),
                },
                Role {
                    name: "admin".into(),
                    scopes: ADMIN_SCOPES.iter().map(|s| s.to_string()).collect(),
                },
            ],
            latest_activity: None,
        };
        let s = p.scopes();
        assert_eq!(s.len(), ADMIN_SCOPES.len());
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert!(p.has_scope("metrics"));
    }
}
