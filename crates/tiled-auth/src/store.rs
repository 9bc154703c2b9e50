//! [`AuthStore`]: principals, identities, roles, API keys and sessions in
//! SQLite or PostgreSQL.
//!
//! It reuses the catalog's database layer (`tiled_catalog::db`): a small
//! blocking pool, positional parameters always bound (PostgreSQL receives
//! them as text and the SQL casts them). Statements here are written once
//! with `$n` / `$n::type` placeholders and rendered per dialect by [`sql`].
//! Every operation that writes runs in one transaction; concurrent logins
//! of the same new identity from several replicas end with one principal
//! (the loser of the insert race retries and finds the winner's).
//!
//! This module does not hash passwords, sign tokens or know about HTTP.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tiled_catalog::db::{Connection, Dialect, Param, Pool, PooledConnection, Row};
use tiled_catalog::{Catalog, CatalogError, CatalogUri};
use uuid::Uuid;

use crate::AuthError;
use crate::model::{
    ApiKeyInfo, INHERIT, Identity, Principal, PrincipalType, Role, Session, format_time, parse_time,
};
use crate::schema;

/// At most this many API keys per principal (upstream's limit), so listing
/// them stays cheap and abuse is bounded.
pub const API_KEY_LIMIT: i64 = 100;

/// At most this many live sessions per principal (upstream's limit).
pub const SESSION_LIMIT: i64 = 200;

/// Bytes of entropy in an API key: upstream's 32, plus 4 because the first
/// eight hex characters are stored in the clear.
pub const API_KEY_BYTES: usize = 36;

/// Render a statement written with `$n` / `$n::type` placeholders for a
/// dialect: `?n` on SQLite (casts dropped), `$n::text` / `$n::text::type`
/// on PostgreSQL (every parameter is sent as text).
pub fn sql(dialect: Dialect, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        let n = &after[..digits];
        let mut tail = &after[digits..];
        let mut cast = None;
        if let Some(c) = tail.strip_prefix("::") {
            let len = c
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            cast = Some(&c[..len]);
            tail = &c[len..];
        }
        match dialect {
            Dialect::Sqlite => {
                out.push('?');
                out.push_str(n);
            }
            Dialect::Postgres => {
                out.push('$');
                out.push_str(n);
                out.push_str("::text");
                if let Some(c) = cast {
                    out.push_str("::");
                    out.push_str(c);
                }
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// A connection to run statements on: pooled (reads; a PostgreSQL
/// connection that fails is retired) or inside a transaction.
enum Handle<'a, 'p> {
    Pooled(&'a mut PooledConnection<'p>),
    Tx(&'a mut dyn Connection),
}

struct Db<'a, 'p> {
    handle: Handle<'a, 'p>,
    dialect: Dialect,
}

impl Db<'_, '_> {
    fn rows(&mut self, text: &str, params: &[Param]) -> Result<Vec<Row>, AuthError> {
        let q = sql(self.dialect, text);
        Ok(match &mut self.handle {
            Handle::Pooled(c) => c.rows(&q, params)?,
            Handle::Tx(c) => c.query(&q, params)?,
        })
    }

    fn exec(&mut self, text: &str, params: &[Param]) -> Result<u64, AuthError> {
        let q = sql(self.dialect, text);
        Ok(match &mut self.handle {
            Handle::Pooled(c) => c.execute(&q, params)?,
            Handle::Tx(c) => c.execute(&q, params)?,
        })
    }
}

fn text(s: impl Into<String>) -> Param {
    Param::Text(s.into())
}

fn opt_text(s: Option<String>) -> Param {
    s.map_or(Param::Null, Param::Text)
}

fn uuid_param(u: Uuid) -> Param {
    Param::Text(u.hyphenated().to_string())
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn time_param(t: DateTime<Utc>) -> Param {
    Param::Text(format_time(t))
}

fn opt_time(row: &Row, i: usize) -> Result<Option<DateTime<Utc>>, AuthError> {
    row.opt_text(i)?.map(parse_time).transpose()
}

fn stored_uuid(row: &Row, i: usize) -> Result<Uuid, AuthError> {
    let t = row.text(i)?;
    Uuid::try_parse(t).map_err(|_| AuthError::Internal(format!("bad stored UUID {t:?}")))
}

fn json_list(row: &Row, i: usize) -> Result<Option<Vec<String>>, AuthError> {
    match row.opt_text(i)? {
        None => Ok(None),
        Some(t) => serde_json::from_str(t)
            .map(Some)
            .map_err(|e| AuthError::Internal(format!("bad stored JSON list {t:?}: {e}"))),
    }
}

fn json_text(v: &impl serde::Serialize) -> Result<String, AuthError> {
    serde_json::to_string(v).map_err(|e| AuthError::Internal(e.to_string()))
}

/// `now + d`, or a 400 if that is beyond what a datetime can hold.
fn after(t: DateTime<Utc>, d: Duration) -> Result<DateTime<Utc>, AuthError> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .filter(|t| t.format("%Y").to_string().len() == 4)
        .ok_or_else(|| AuthError::BadRequest(format!("duration {d:?} is too long")))
}

/// What an API-key lookup decided (committed either way: an expired key is
/// deleted even though the caller gets a 401).
enum KeyOutcome {
    Valid(Box<(Principal, ApiKeyInfo)>),
    Invalid,
}

const KEY_COLUMNS: &str = "first_eight, principal, expiration_time, note, scopes, access_tags, \
                           latest_activity, time_created";

fn key_from_row(row: &Row, offset: usize) -> Result<ApiKeyInfo, AuthError> {
    let scopes = json_list(row, offset + 4)?.unwrap_or_else(|| vec![INHERIT.to_string()]);
    Ok(ApiKeyInfo {
        first_eight: row.text(offset)?.to_string(),
        principal: stored_uuid(row, offset + 1)?,
        expiration_time: opt_time(row, offset + 2)?,
        note: row.opt_text(offset + 3)?.map(str::to_string),
        scopes,
        access_tags: json_list(row, offset + 5)?,
        latest_activity: opt_time(row, offset + 6)?,
        time_created: parse_time(row.text(offset + 7)?)?,
    })
}

const SESSION_COLUMNS: &str = "uuid, principal, time_created, expiration_time, \
                               time_last_refreshed, revoked, state, refresh_count";

fn session_from_row(row: &Row) -> Result<Session, AuthError> {
    let state = match row.opt_text(6)? {
        None => Value::Object(Default::default()),
        Some(t) => serde_json::from_str(t)
            .map_err(|e| AuthError::Internal(format!("bad stored session state: {e}")))?,
    };
    Ok(Session {
        uuid: stored_uuid(row, 0)?,
        principal: stored_uuid(row, 1)?,
        time_created: parse_time(row.text(2)?)?,
        expiration_time: parse_time(row.text(3)?)?,
        time_last_refreshed: opt_time(row, 4)?,
        revoked: row.int(5)? != 0,
        state,
        refresh_count: row.int(7)?,
    })
}

/// The authentication database.
pub struct AuthStore {
    pool: Pool,
    dialect: Dialect,
    /// Keeps a [`AuthStore::temporary`] store's directory alive.
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl AuthStore {
    /// Connect to `uri` (the catalog's spellings: `sqlite:///auth.db`,
    /// `sqlite+aiosqlite:///...`, `postgresql://...`,
    /// `postgresql+asyncpg://...`). With `init`, create or upgrade the
    /// `auth_` tables; without it, a database whose schema is missing or
    /// older is refused.
    ///
    /// # Errors
    /// Connection errors; [`AuthError::Database`] for a missing, older or
    /// newer schema.
    pub fn open(uri: &CatalogUri, init: bool) -> Result<AuthStore, AuthError> {
        let pool = Catalog::connect(uri)?;
        let dialect = pool.dialect;
        if init {
            schema::upgrade(&pool)?;
        } else {
            let found = schema::version(&pool)?;
            if found > schema::LATEST {
                return Err(schema::newer(found));
            }
            if found < schema::LATEST {
                return Err(AuthError::Database(format!(
                    "the authentication database's schema is version {found}, not {}; \
                     run `tiled admin upgrade-database URI` (or set \
                     database.init_if_not_exists: true)",
                    schema::LATEST
                )));
            }
        }
        Ok(AuthStore {
            pool,
            dialect,
            _temp: None,
        })
    }

    /// A new SQLite store in a temporary directory, removed when the store is
    /// dropped.
    ///
    /// # Errors
    /// I/O and schema errors.
    pub fn temporary() -> Result<AuthStore, AuthError> {
        let dir = tempfile::Builder::new()
            .prefix("tiled-auth-")
            .tempdir()
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let uri = CatalogUri::Sqlite(dir.path().join("auth.db"));
        let mut store = AuthStore::open(&uri, true)?;
        store._temp = Some(dir);
        Ok(store)
    }

    /// The SQL dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The schema version of the database.
    ///
    /// # Errors
    /// Database errors.
    pub fn schema_version(&self) -> Result<i64, AuthError> {
        schema::version(&self.pool)
    }

    fn read<T>(&self, f: impl FnOnce(&mut Db) -> Result<T, AuthError>) -> Result<T, AuthError> {
        let mut c = self.pool.get()?;
        let mut db = Db {
            handle: Handle::Pooled(&mut c),
            dialect: self.dialect,
        };
        f(&mut db)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Db) -> Result<T, AuthError>) -> Result<T, AuthError> {
        let mut failure: Option<AuthError> = None;
        let dialect = self.dialect;
        let out = self.pool.transaction(|c| {
            let mut db = Db {
                handle: Handle::Tx(c),
                dialect,
            };
            f(&mut db).map_err(|e| {
                let msg = e.to_string();
                failure = Some(e);
                CatalogError::Internal(msg)
            })
        });
        out.map_err(|e| failure.take().unwrap_or_else(|| e.into()))
    }

    // ------------------------------------------------------------ principals

    fn load_principal(db: &mut Db, uuid: Uuid) -> Result<Option<Principal>, AuthError> {
        let rows = db.rows(
            "SELECT type, latest_activity FROM auth_principals WHERE uuid = $1",
            &[uuid_param(uuid)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let principal_type = PrincipalType::parse(row.text(0)?)?;
        let latest_activity = opt_time(row, 1)?;
        let identities = db
            .rows(
                "SELECT provider, id, latest_login FROM auth_identities \
                 WHERE principal = $1 ORDER BY time_created, provider, id",
                &[uuid_param(uuid)],
            )?
            .iter()
            .map(|r| {
                Ok(Identity {
                    provider: r.text(0)?.to_string(),
                    id: r.text(1)?.to_string(),
                    latest_login: opt_time(r, 2)?,
                })
            })
            .collect::<Result<Vec<_>, AuthError>>()?;
        let roles = db
            .rows(
                "SELECT r.name, r.scopes FROM auth_principal_roles pr \
                 JOIN auth_roles r ON r.name = pr.role \
                 WHERE pr.principal = $1 ORDER BY pr.time_granted, r.name",
                &[uuid_param(uuid)],
            )?
            .iter()
            .map(|r| {
                Ok(Role {
                    name: r.text(0)?.to_string(),
                    scopes: json_list(r, 1)?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, AuthError>>()?;
        Ok(Some(Principal {
            uuid,
            principal_type,
            identities,
            roles,
            latest_activity,
        }))
    }

    fn require_principal(db: &mut Db, uuid: Uuid) -> Result<Principal, AuthError> {
        Self::load_principal(db, uuid)?
            .ok_or_else(|| AuthError::NotFound(format!("No such Principal {uuid}")))
    }

    fn grant(db: &mut Db, principal: Uuid, role: &str, at: DateTime<Utc>) -> Result<(), AuthError> {
        db.exec(
            "INSERT INTO auth_principal_roles (principal, role, time_granted) VALUES ($1, $2, $3) \
             ON CONFLICT (principal, role) DO NOTHING",
            &[uuid_param(principal), text(role), time_param(at)],
        )?;
        Ok(())
    }

    fn touch_principal(db: &mut Db, principal: Uuid, at: DateTime<Utc>) -> Result<(), AuthError> {
        db.exec(
            "UPDATE auth_principals SET latest_activity = $1 WHERE uuid = $2",
            &[time_param(at), uuid_param(principal)],
        )?;
        Ok(())
    }

    /// The principal logging in as `id` at `provider`: found, or created as
    /// a user with role `user` (plus `admin` when `admin`). Records the
    /// login. With `admin`, an existing principal gains the `admin` role
    /// (upstream's `tiled_admins` config promotes, and never demotes).
    ///
    /// # Errors
    /// Database errors.
    pub fn principal_for_identity(
        &self,
        provider: &str,
        id: &str,
        admin: bool,
    ) -> Result<Principal, AuthError> {
        // Two logins of a new identity at once (two replicas): one insert
        // of the identity wins; the other rolls back and finds it.
        for _ in 0..3 {
            let outcome = self.write(|db| {
                let t = now();
                let found = db.rows(
                    "SELECT principal FROM auth_identities WHERE provider = $1 AND id = $2",
                    &[text(provider), text(id)],
                )?;
                let uuid = if let Some(row) = found.first() {
                    let uuid = stored_uuid(row, 0)?;
                    db.exec(
                        "UPDATE auth_identities SET latest_login = $1 WHERE provider = $2 AND id = $3",
                        &[time_param(t), text(provider), text(id)],
                    )?;
                    uuid
                } else {
                    let uuid = Uuid::new_v4();
                    db.exec(
                        "INSERT INTO auth_principals (uuid, type, time_created, latest_activity) \
                         VALUES ($1, 'user', $2, $2)",
                        &[uuid_param(uuid), time_param(t)],
                    )?;
                    Self::grant(db, uuid, "user", t)?;
                    let inserted = db.exec(
                        "INSERT INTO auth_identities (provider, id, principal, time_created, latest_login) \
                         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (provider, id) DO NOTHING",
                        &[text(provider), text(id), uuid_param(uuid), time_param(t)],
                    )?;
                    if inserted == 0 {
                        return Err(AuthError::Conflict("identity created concurrently".into()));
                    }
                    uuid
                };
                if admin {
                    // After `user`, so roles list in grant order.
                    let t_admin = t + TimeDelta::microseconds(1);
                    Self::grant(db, uuid, "admin", t_admin)?;
                }
                Self::touch_principal(db, uuid, t)?;
                Self::require_principal(db, uuid)
            });
            match outcome {
                Err(AuthError::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(AuthError::Internal(format!(
            "could not record identity {provider}/{id} after retries"
        )))
    }

    /// A new service principal with role `role`.
    ///
    /// # Errors
    /// [`AuthError::BadRequest`] for an unknown role; database errors.
    pub fn create_service_principal(&self, role: &str) -> Result<Principal, AuthError> {
        self.write(|db| {
            let known = db.rows("SELECT name FROM auth_roles WHERE name = $1", &[text(role)])?;
            if known.is_empty() {
                return Err(AuthError::BadRequest(format!(
                    "Role named {role:?} is not found"
                )));
            }
            let t = now();
            let uuid = Uuid::new_v4();
            db.exec(
                "INSERT INTO auth_principals (uuid, type, time_created) VALUES ($1, 'service', $2)",
                &[uuid_param(uuid), time_param(t)],
            )?;
            Self::grant(db, uuid, role, t)?;
            Self::require_principal(db, uuid)
        })
    }

    /// The principal `uuid`, if it exists.
    ///
    /// # Errors
    /// Database errors.
    pub fn principal(&self, uuid: Uuid) -> Result<Option<Principal>, AuthError> {
        self.read(|db| Self::load_principal(db, uuid))
    }

    /// A page of principals, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn list_principals(&self, offset: u64, limit: u64) -> Result<Vec<Principal>, AuthError> {
        self.read(|db| {
            let rows = db.rows(
                "SELECT uuid FROM auth_principals ORDER BY time_created, uuid \
                 LIMIT $1::bigint OFFSET $2::bigint",
                &[
                    Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
                    Param::Int(i64::try_from(offset).unwrap_or(i64::MAX)),
                ],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                if let Some(p) = Self::load_principal(db, stored_uuid(r, 0)?)? {
                    out.push(p);
                }
            }
            Ok(out)
        })
    }

    /// How many principals there are.
    ///
    /// # Errors
    /// Database errors.
    pub fn count_principals(&self) -> Result<i64, AuthError> {
        self.read(|db| {
            let rows = db.rows("SELECT count(*) FROM auth_principals", &[])?;
            Ok(rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0))
        })
    }

    /// The union of the principal's roles' scopes, sorted (empty for an
    /// unknown principal).
    ///
    /// # Errors
    /// Database errors.
    pub fn scopes_of(&self, principal: Uuid) -> Result<Vec<String>, AuthError> {
        Ok(self
            .principal(principal)?
            .map(|p| p.scopes())
            .unwrap_or_default())
    }

    /// Upstream's `Principal` JSON (`GET /auth/whoami`, `/auth/principal/{uuid}`):
    /// `{"uuid", "type", "identities", "roles", "api_keys", "sessions",
    /// "latest_activity"}`. The UUIDs are dashed, as upstream's orjson
    /// writes them.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] for an unknown principal; database errors.
    pub fn whoami(&self, principal: Uuid) -> Result<Value, AuthError> {
        self.read(|db| {
            let p = Self::require_principal(db, principal)?;
            let keys = Self::keys_of(db, principal)?;
            let sessions = Self::sessions_of(db, principal)?;
            // Upstream: the latest login, session refresh or key use.
            let latest = p
                .identities
                .iter()
                .filter_map(|i| i.latest_login)
                .chain(keys.iter().filter_map(|k| k.latest_activity))
                .chain(sessions.iter().filter_map(|s| s.time_last_refreshed))
                .chain(p.latest_activity)
                .max();
            Ok(json!({
                "uuid": p.uuid.hyphenated().to_string(),
                "type": p.principal_type.as_str(),
                "identities": p.identities.iter().map(Identity::to_json).collect::<Vec<_>>(),
                "roles": p.roles.iter().map(Role::to_json).collect::<Vec<_>>(),
                "api_keys": keys.iter().map(ApiKeyInfo::to_json).collect::<Vec<_>>(),
                "sessions": sessions.iter().map(Session::to_json).collect::<Vec<_>>(),
                "latest_activity": latest.map(format_time),
            }))
        })
    }

    // ------------------------------------------------------------ sessions

    fn sessions_of(db: &mut Db, principal: Uuid) -> Result<Vec<Session>, AuthError> {
        db.rows(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE principal = $1 \
                 ORDER BY time_created, uuid"
            ),
            &[uuid_param(principal)],
        )?
        .iter()
        .map(session_from_row)
        .collect()
    }

    fn load_session(db: &mut Db, uuid: Uuid) -> Result<Option<Session>, AuthError> {
        db.rows(
            &format!("SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE uuid = $1"),
            &[uuid_param(uuid)],
        )?
        .first()
        .map(session_from_row)
        .transpose()
    }

    /// A new session for `principal`, expiring `max_age` from now unless
    /// refreshed, with an empty state.
    ///
    /// # Errors
    /// As [`AuthStore::create_session_with_state`].
    pub fn create_session(&self, principal: Uuid, max_age: Duration) -> Result<Session, AuthError> {
        self.create_session_with_state(principal, max_age, json!({}))
    }

    /// A new session carrying authenticator `state` (copied into access
    /// tokens). The principal's expired and revoked sessions are deleted
    /// first.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] for an unknown principal;
    /// [`AuthError::BadRequest`] past [`SESSION_LIMIT`] live sessions or for
    /// an absurd `max_age`; database errors.
    pub fn create_session_with_state(
        &self,
        principal: Uuid,
        max_age: Duration,
        state: Value,
    ) -> Result<Session, AuthError> {
        let state = match state {
            Value::Null => json!({}),
            s @ Value::Object(_) => s,
            other => {
                return Err(AuthError::BadRequest(format!(
                    "session state must be an object, not {other}"
                )));
            }
        };
        self.write(|db| {
            let t = now();
            let expires = after(t, max_age)?;
            Self::require_principal(db, principal)?;
            db.exec(
                "DELETE FROM auth_sessions WHERE principal = $1 AND (revoked <> 0 OR expiration_time < $2)",
                &[uuid_param(principal), time_param(t)],
            )?;
            let n = db
                .rows(
                    "SELECT count(*) FROM auth_sessions WHERE principal = $1",
                    &[uuid_param(principal)],
                )?
                .first()
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            if n >= SESSION_LIMIT {
                return Err(AuthError::BadRequest(format!(
                    "This Principal already has {n} sessions which is greater than or equal to \
                     the maximum number allowed, {SESSION_LIMIT}. Some Sessions must be closed \
                     before creating new ones."
                )));
            }
            let uuid = Uuid::new_v4();
            db.exec(
                "INSERT INTO auth_sessions (uuid, principal, time_created, expiration_time, revoked, state, refresh_count) \
                 VALUES ($1, $2, $3, $4, 0, $5, 0)",
                &[
                    uuid_param(uuid),
                    uuid_param(principal),
                    time_param(t),
                    time_param(expires),
                    text(json_text(&state)?),
                ],
            )?;
            Self::load_session(db, uuid)?
                .ok_or_else(|| AuthError::Internal("session vanished after insert".into()))
        })
    }

    /// The session `uuid`, if it exists (revoked or expired included).
    ///
    /// # Errors
    /// Database errors.
    pub fn session(&self, uuid: Uuid) -> Result<Option<Session>, AuthError> {
        self.read(|db| Self::load_session(db, uuid))
    }

    /// Slide session `uuid`: it now expires `max_age` from now, but never
    /// later than `session_max_age` after its creation (when given). Counts
    /// the refresh and records the principal's activity.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] ("Session has expired. Please
    /// re-authenticate.", whichever the reason, as upstream) for an unknown,
    /// revoked or expired session or one past `session_max_age`; database
    /// errors.
    pub fn refresh_session(
        &self,
        uuid: Uuid,
        max_age: Duration,
        session_max_age: Option<Duration>,
    ) -> Result<Session, AuthError> {
        let expired =
            || AuthError::Unauthenticated("Session has expired. Please re-authenticate.".into());
        self.write(|db| {
            let t = now();
            let s = Self::load_session(db, uuid)?.ok_or_else(expired)?;
            if s.revoked || s.expiration_time < t {
                return Err(expired());
            }
            let mut expires = after(t, max_age)?;
            if let Some(limit) = session_max_age {
                let end = after(s.time_created, limit)?;
                if end <= t {
                    return Err(expired());
                }
                expires = expires.min(end);
            }
            let n = db.exec(
                "UPDATE auth_sessions SET expiration_time = $1, time_last_refreshed = $2, \
                 refresh_count = refresh_count + 1 WHERE uuid = $3 AND revoked = 0",
                &[time_param(expires), time_param(t), uuid_param(uuid)],
            )?;
            if n == 0 {
                return Err(expired());
            }
            Self::touch_principal(db, s.principal, t)?;
            Self::load_session(db, uuid)?.ok_or_else(expired)
        })
    }

    /// Revoke session `uuid`, so it cannot be refreshed again (revoking a
    /// revoked session is fine, as upstream).
    ///
    /// # Errors
    /// [`AuthError::Conflict`] ("No session ...") for an unknown or expired
    /// session, as upstream's 409; database errors.
    pub fn revoke_session(&self, uuid: Uuid) -> Result<(), AuthError> {
        self.write(|db| {
            let n = db.exec(
                "UPDATE auth_sessions SET revoked = 1 WHERE uuid = $1 AND expiration_time >= $2",
                &[uuid_param(uuid), time_param(now())],
            )?;
            if n == 0 {
                return Err(AuthError::Conflict(format!("No session {}", uuid.simple())));
            }
            Ok(())
        })
    }

    // ------------------------------------------------------------ API keys

    fn keys_of(db: &mut Db, principal: Uuid) -> Result<Vec<ApiKeyInfo>, AuthError> {
        db.rows(
            &format!("SELECT {KEY_COLUMNS} FROM auth_api_keys WHERE principal = $1 ORDER BY id"),
            &[uuid_param(principal)],
        )?
        .iter()
        .map(|r| key_from_row(r, 0))
        .collect()
    }

    /// A new API key for `principal`. `scopes: None` inherits the
    /// principal's scopes at use time (shown as `["inherit"]`);
    /// `expires_in` is in seconds (`None`: never). Returns the key's info
    /// and its secret: 36 random bytes as 72 lowercase hex characters,
    /// shown only now (the database keeps its SHA-256).
    ///
    /// # Errors
    /// [`AuthError::NotFound`] for an unknown principal;
    /// [`AuthError::Forbidden`] for scopes the principal lacks;
    /// [`AuthError::BadRequest`] for a negative or absurd `expires_in`, or
    /// past [`API_KEY_LIMIT`] keys; database errors.
    pub fn create_api_key(
        &self,
        principal: Uuid,
        scopes: Option<Vec<String>>,
        access_tags: Option<Vec<String>>,
        expires_in: Option<f64>,
        note: Option<String>,
    ) -> Result<(ApiKeyInfo, String), AuthError> {
        let lifetime = match expires_in {
            None => None,
            Some(s) if s.is_finite() && s >= 0.0 => Some(
                Duration::try_from_secs_f64(s)
                    .map_err(|e| AuthError::BadRequest(format!("expires_in: {e}")))?,
            ),
            Some(s) => {
                return Err(AuthError::BadRequest(format!(
                    "expires_in must be a non-negative number of seconds, not {s}"
                )));
            }
        };
        let scopes_json = scopes.as_ref().map(json_text).transpose()?;
        let tags_json = access_tags.as_ref().map(json_text).transpose()?;
        self.write(|db| {
            let t = now();
            let p = Self::require_principal(db, principal)?;
            if let Some(requested) = &scopes {
                let mine = p.scopes();
                if !requested.iter().all(|s| s == INHERIT || mine.contains(s)) {
                    return Err(AuthError::Forbidden(format!(
                        "Requested scopes {requested:?} must be a subset of the principal's scopes {mine:?}."
                    )));
                }
            }
            let expiration = lifetime.map(|d| after(t, d)).transpose()?;
            db.exec(
                "DELETE FROM auth_api_keys WHERE principal = $1 AND expiration_time IS NOT NULL \
                 AND expiration_time < $2",
                &[uuid_param(principal), time_param(t)],
            )?;
            let n = db
                .rows(
                    "SELECT count(*) FROM auth_api_keys WHERE principal = $1",
                    &[uuid_param(principal)],
                )?
                .first()
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            if n >= API_KEY_LIMIT {
                return Err(AuthError::BadRequest(format!(
                    "This Principal already has {n} API keys which is greater than or equal to \
                     the maximum number allowed, {API_KEY_LIMIT}. Some API keys must be deleted \
                     before creating new ones."
                )));
            }
            let mut secret = [0u8; API_KEY_BYTES];
            rand::rng().fill_bytes(&mut secret);
            let secret_hex = hex::encode(secret);
            let first_eight = secret_hex[..8].to_string();
            let hashed = hex::encode(Sha256::digest(secret));
            db.exec(
                "INSERT INTO auth_api_keys (first_eight, hashed_secret, principal, scopes, access_tags, \
                 expiration_time, note, time_created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    text(first_eight.clone()),
                    text(hashed),
                    uuid_param(principal),
                    opt_text(scopes_json.clone()),
                    opt_text(tags_json.clone()),
                    opt_text(expiration.map(format_time)),
                    opt_text(note.clone()),
                    time_param(t),
                ],
            )?;
            let info = ApiKeyInfo {
                first_eight,
                principal,
                expiration_time: expiration,
                note: note.clone(),
                scopes: scopes.clone().unwrap_or_else(|| vec![INHERIT.to_string()]),
                access_tags: access_tags.clone(),
                latest_activity: None,
                time_created: t,
            };
            Ok((info, secret_hex))
        })
    }

    /// Who an API key belongs to, the key's info, and the scopes a request
    /// made with it has: the key's scopes that its principal still has
    /// (all the principal's scopes for an inheriting key), sorted. Records
    /// the use. An expired key is deleted.
    ///
    /// The secret's SHA-256 is compared in constant time with every stored
    /// key sharing its first eight characters.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] ("Invalid API key") for non-hex,
    /// unknown or expired keys; database errors.
    pub fn authenticate_api_key(
        &self,
        secret: &str,
    ) -> Result<(Principal, ApiKeyInfo, Vec<String>), AuthError> {
        let bytes = hex::decode(secret.trim()).map_err(|_| AuthError::invalid_api_key())?;
        if bytes.len() < 4 {
            return Err(AuthError::invalid_api_key());
        }
        let first_eight = hex::encode(&bytes[..4]);
        let hashed: [u8; 32] = Sha256::digest(&bytes).into();
        let outcome = self.write(|db| {
            let t = now();
            let rows = db.rows(
                &format!(
                    "SELECT id, hashed_secret, {KEY_COLUMNS} FROM auth_api_keys WHERE first_eight = $1"
                ),
                &[text(first_eight.clone())],
            )?;
            let mut found: Option<&Row> = None;
            for row in &rows {
                let stored = hex::decode(row.text(1)?).unwrap_or_default();
                // Unequal lengths compare unequal (also in constant time).
                if bool::from(stored.as_slice().ct_eq(&hashed)) {
                    found = Some(row);
                }
            }
            let Some(row) = found else {
                return Ok(KeyOutcome::Invalid);
            };
            let id = row.int(0)?;
            let info = key_from_row(row, 2)?;
            if info.expiration_time.is_some_and(|e| e < t) {
                db.exec("DELETE FROM auth_api_keys WHERE id = $1::bigint", &[Param::Int(id)])?;
                return Ok(KeyOutcome::Invalid);
            }
            let Some(principal) = Self::load_principal(db, info.principal)? else {
                db.exec("DELETE FROM auth_api_keys WHERE id = $1::bigint", &[Param::Int(id)])?;
                return Ok(KeyOutcome::Invalid);
            };
            db.exec(
                "UPDATE auth_api_keys SET latest_activity = $1 WHERE id = $2::bigint",
                &[time_param(t), Param::Int(id)],
            )?;
            Self::touch_principal(db, principal.uuid, t)?;
            let info = ApiKeyInfo {
                latest_activity: Some(t),
                ..info
            };
            Ok(KeyOutcome::Valid(Box::new((principal, info))))
        })?;
        match outcome {
            KeyOutcome::Invalid => Err(AuthError::invalid_api_key()),
            KeyOutcome::Valid(found) => {
                let (principal, info) = *found;
                let scopes = effective_scopes(&principal, &info);
                Ok((principal, info, scopes))
            }
        }
    }

    /// The principal's API keys, oldest first (expired ones included until
    /// they are next used or purged).
    ///
    /// # Errors
    /// Database errors.
    pub fn api_keys(&self, principal: Uuid) -> Result<Vec<ApiKeyInfo>, AuthError> {
        self.read(|db| Self::keys_of(db, principal))
    }

    /// Delete the principal's API key(s) named by `first_eight` (only its
    /// first eight characters count, as upstream).
    ///
    /// # Errors
    /// [`AuthError::NotFound`] if the principal has no such key; database
    /// errors.
    pub fn revoke_api_key(&self, principal: Uuid, first_eight: &str) -> Result<(), AuthError> {
        let prefix: String = first_eight.chars().take(8).collect();
        self.write(|db| {
            let n = db.exec(
                "DELETE FROM auth_api_keys WHERE principal = $1 AND first_eight = $2",
                &[uuid_param(principal), text(prefix.to_ascii_lowercase())],
            )?;
            if n == 0 {
                return Err(AuthError::NotFound(format!(
                    "The principal {} has no such API key.",
                    principal.hyphenated()
                )));
            }
            Ok(())
        })
    }

    // -------------------------------------------------- device-code logins

    /// Record a pending device-code login (the device code's SHA-256 hex,
    /// the normalized user code). Expired ones are purged first. `Ok(false)`
    /// if the user code is taken (the caller draws another).
    ///
    /// # Errors
    /// [`AuthError::TooManyAttempts`] when `max` logins are pending;
    /// database errors.
    pub(crate) fn pending_insert(
        &self,
        digest: &str,
        user_code: &str,
        provider: &str,
        expires: DateTime<Utc>,
        max: usize,
        retry_after_secs: u64,
    ) -> Result<bool, AuthError> {
        self.write(|db| {
            db.exec(
                "DELETE FROM auth_pending_sessions WHERE expiration_time <= $1",
                &[time_param(now())],
            )?;
            let count = db
                .rows("SELECT count(*) FROM auth_pending_sessions", &[])?
                .first()
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            if usize::try_from(count).unwrap_or(usize::MAX) >= max {
                return Err(AuthError::TooManyAttempts { retry_after_secs });
            }
            let taken = !db
                .rows(
                    "SELECT 1 FROM auth_pending_sessions WHERE user_code = $1",
                    &[Param::Text(user_code.into())],
                )?
                .is_empty();
            if taken {
                return Ok(false);
            }
            db.exec(
                "INSERT INTO auth_pending_sessions \
                 (device_code_hash, user_code, provider, expiration_time) VALUES ($1, $2, $3, $4)",
                &[
                    Param::Text(digest.into()),
                    Param::Text(user_code.into()),
                    Param::Text(provider.into()),
                    time_param(expires),
                ],
            )?;
            Ok(true)
        })
    }

    /// The provider of a live pending login by (normalized) user code.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn pending_provider(&self, user_code: &str) -> Result<Option<String>, AuthError> {
        self.read(|db| {
            db.rows(
                "SELECT provider FROM auth_pending_sessions WHERE user_code = $1 \
                 AND expiration_time > $2",
                &[Param::Text(user_code.into()), time_param(now())],
            )?
            .first()
            .map(|r| r.text(0).map(str::to_string))
            .transpose()
            .map_err(Into::into)
        })
    }

    /// Approve a live, not yet approved pending login as `id`; returns its
    /// provider, or `None` if there is no such login.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn pending_approve(
        &self,
        user_code: &str,
        id: &str,
    ) -> Result<Option<String>, AuthError> {
        self.write(|db| {
            let n = db.exec(
                "UPDATE auth_pending_sessions SET approved_id = $1 WHERE user_code = $2 \
                 AND expiration_time > $3 AND approved_id IS NULL",
                &[
                    Param::Text(id.into()),
                    Param::Text(user_code.into()),
                    time_param(now()),
                ],
            )?;
            if n == 0 {
                return Ok(None);
            }
            db.rows(
                "SELECT provider FROM auth_pending_sessions WHERE user_code = $1",
                &[Param::Text(user_code.into())],
            )?
            .first()
            .map(|r| r.text(0).map(str::to_string))
            .transpose()
            .map_err(Into::into)
        })
    }

    /// Where the pending login with this device-code digest stands. An
    /// approved or expired one is deleted in the same transaction, so an
    /// approval is handed out once, whichever replica is polled.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn pending_take(&self, digest: &str) -> Result<PendingState, AuthError> {
        self.write(|db| {
            let rows = db.rows(
                "SELECT provider, expiration_time, approved_id FROM auth_pending_sessions \
                 WHERE device_code_hash = $1",
                &[Param::Text(digest.into())],
            )?;
            let Some(row) = rows.first() else {
                return Ok(PendingState::Unknown);
            };
            let expired = parse_time(row.text(1)?)? <= now();
            let approved = row.opt_text(2)?.map(str::to_string);
            let provider = row.text(0)?.to_string();
            if !expired && approved.is_none() {
                return Ok(PendingState::Pending);
            }
            let n = db.exec(
                "DELETE FROM auth_pending_sessions WHERE device_code_hash = $1",
                &[Param::Text(digest.into())],
            )?;
            Ok(match (expired, approved) {
                // Another poll took it first.
                _ if n == 0 => PendingState::Unknown,
                (true, _) => PendingState::Expired,
                (false, Some(id)) => PendingState::Approved(Identity::new(provider, id)),
                (false, None) => PendingState::Pending,
            })
        })
    }

    /// How many device-code logins are recorded (expired ones included
    /// until purged).
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn pending_count(&self) -> Result<usize, AuthError> {
        self.read(|db| {
            let n = db
                .rows("SELECT count(*) FROM auth_pending_sessions", &[])?
                .first()
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    /// Delete expired API keys and expired or revoked sessions of every
    /// principal; returns how many rows went.
    ///
    /// # Errors
    /// Database errors.
    pub fn purge_expired(&self) -> Result<u64, AuthError> {
        self.write(|db| {
            let t = time_param(now());
            let keys = db.exec(
                "DELETE FROM auth_api_keys WHERE expiration_time IS NOT NULL AND expiration_time < $1",
                std::slice::from_ref(&t),
            )?;
            let sessions = db.exec(
                "DELETE FROM auth_sessions WHERE revoked <> 0 OR expiration_time < $1",
                &[t],
            )?;
            Ok(keys + sessions)
        })
    }
}

/// Where a pending device-code login stands (see
/// [`AuthStore::pending_take`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PendingState {
    Pending,
    Approved(Identity),
    Expired,
    Unknown,
}

/// The scopes a request made with `key` has (upstream's rule): the key's
/// scopes that the principal still has; `inherit` confers all the
/// principal's scopes. Sorted, without `inherit`.
pub fn effective_scopes(principal: &Principal, key: &ApiKeyInfo) -> Vec<String> {
    let mine = principal.scopes();
    if key.inherits() {
        return mine;
    }
    let mut out: Vec<String> = key
        .scopes
        .iter()
        .filter(|s| mine.contains(s))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_per_dialect() {
        let q = "SELECT a FROM t WHERE x = $1 AND y = $2::bigint LIMIT $10::bigint -- $";
        assert_eq!(
            sql(Dialect::Sqlite, q),
            "SELECT a FROM t WHERE x = ?1 AND y = ?2 LIMIT ?10 -- $"
        );
        assert_eq!(
            sql(Dialect::Postgres, q),
            "SELECT a FROM t WHERE x = $1::text AND y = $2::text::bigint LIMIT $10::text::bigint -- $"
        );
    }
}
