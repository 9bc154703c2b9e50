//! Password authenticators: does this username/password pair name a user?
//!
//! - [`DictionaryAuthenticator`] — upstream's
//!   `tiled.authenticators:DictionaryAuthenticator` (args
//!   `users_to_passwords: {name: password}`), for demos and tests. Values
//!   may also be argon2 PHC hashes (`$argon2id$...`), so a config need not
//!   hold clear-text passwords.
//! - [`UsersFileAuthenticator`] — a file of `username:$argon2id$...` lines
//!   (`#` comments and blank lines ignored), re-read when it changes, so
//!   users can be added without a restart. Make the lines with
//!   [`hash_password`].
//!
//! Comparisons take the same time whether or not the username exists and
//! wherever the passwords differ: clear-text passwords are compared as
//! SHA-256 digests in constant time, and unknown users are checked against
//! a dummy hash of the same kind as the known ones. Rate limiting is the
//! caller's job ([`crate::LoginLimiter`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Checks a username and password.
pub trait PasswordAuthenticator: Send + Sync {
    /// The identity id (usually the username) if the password is right.
    fn authenticate(&self, username: &str, password: &str) -> Option<String>;
}

/// Hash a password as an argon2id PHC string with a random salt and the
/// crate's default cost (`$argon2id$v=19$m=19456,t=2,p=1$...`).
///
/// # Errors
/// [`AuthError::Internal`] if hashing fails.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Internal(format!("cannot hash password: {e}")))
}

/// Whether `password` matches an argon2 PHC string (any argon2 variant and
/// cost; the string carries them). A malformed hash matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether a stored value is an argon2 PHC hash rather than a password.
fn is_phc(value: &str) -> bool {
    value.starts_with("$argon2id$")
        || value.starts_with("$argon2i$")
        || value.starts_with("$argon2d$")
}

/// A hash no password is known for, to spend the same time on unknown
/// users as on known ones.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut b = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
        hash_password(&hex::encode(b)).unwrap_or_default()
    })
}

/// Constant-time equality of two clear-text passwords (their digests, so
/// lengths do not leak either).
fn same_password(a: &str, b: &str) -> bool {
    let da = Sha256::digest(a.as_bytes());
    let db = Sha256::digest(b.as_bytes());
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

/// Check `password` against a stored value: a PHC hash or a clear-text
/// password. `None` (unknown user) spends comparable time and fails.
fn check_stored(stored: Option<&str>, password: &str, hashes: bool) -> bool {
    match stored {
        Some(s) if is_phc(s) => verify_password(password, s),
        // Upstream: an empty password means no such user.
        Some(s) if !s.is_empty() => same_password(s, password),
        _ => {
            if hashes {
                let _ = verify_password(password, dummy_hash());
            } else {
                let _ = same_password("\u{0}unknown user", password);
            }
            false
        }
    }
}

/// Usernames mapped to passwords (or argon2 hashes of them).
pub struct DictionaryAuthenticator {
    users: HashMap<String, String>,
    has_hashes: bool,
}

impl std::fmt::Debug for DictionaryAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.users.keys().collect();
        names.sort();
        f.debug_struct("DictionaryAuthenticator")
            .field("users", &names)
            .finish_non_exhaustive()
    }
}

impl DictionaryAuthenticator {
    /// From `{username: password-or-argon2-hash}`.
    pub fn new(users_to_passwords: HashMap<String, String>) -> Self {
        let has_hashes = users_to_passwords.values().any(|v| is_phc(v));
        DictionaryAuthenticator {
            users: users_to_passwords,
            has_hashes,
        }
    }

    /// From upstream's config `args`: `{"users_to_passwords": {name: password}}`.
    ///
    /// # Errors
    /// [`AuthError::BadRequest`] if `users_to_passwords` is missing or not a
    /// mapping of strings.
    pub fn from_args(args: &Value) -> Result<Self, AuthError> {
        let map = args
            .get("users_to_passwords")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                AuthError::BadRequest(
                    "DictionaryAuthenticator needs args.users_to_passwords: {username: password}"
                        .into(),
                )
            })?;
        let mut users = HashMap::with_capacity(map.len());
        for (name, pw) in map {
            let pw = match pw {
                Value::String(s) => s.clone(),
                // YAML may turn an all-digit password into a number.
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(AuthError::BadRequest(format!(
                        "users_to_passwords.{name}: expected a string, got {other}"
                    )));
                }
            };
            users.insert(name.clone(), pw);
        }
        Ok(Self::new(users))
    }
}

impl PasswordAuthenticator for DictionaryAuthenticator {
    fn authenticate(&self, username: &str, password: &str) -> Option<String> {
        let stored = self.users.get(username).map(String::as_str);
        check_stored(stored, password, self.has_hashes).then(|| username.to_string())
    }
}

/// What a users file held when last read.
struct UsersFileCache {
    stamp: Option<(SystemTime, u64)>,
    users: HashMap<String, String>,
}

/// A file of `username:$argon2id$...` lines, re-read when its modification
/// time or size changes. An unreadable file admits nobody (and is retried
/// on the next login).
pub struct UsersFileAuthenticator {
    path: PathBuf,
    cache: Mutex<UsersFileCache>,
}

impl std::fmt::Debug for UsersFileAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsersFileAuthenticator")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Parse a users file: `name:hash` per line; the hash must be an argon2 PHC
/// string (clear-text passwords are refused, so a mistake is loud).
fn parse_users(text: &str, path: &Path) -> Result<HashMap<String, String>, AuthError> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, hash) = line.split_once(':').ok_or_else(|| {
            AuthError::BadRequest(format!(
                "{}:{}: expected `username:$argon2id$...`",
                path.display(),
                i + 1
            ))
        })?;
        let (name, hash) = (name.trim(), hash.trim());
        if name.is_empty() || !is_phc(hash) || PasswordHash::new(hash).is_err() {
            return Err(AuthError::BadRequest(format!(
                "{}:{}: expected `username:$argon2id$...` (an argon2 PHC hash such as `$argon2id$v=19$...`; clear-text passwords are refused)",
                path.display(),
                i + 1
            )));
        }
        users.insert(name.to_string(), hash.to_string());
    }
    Ok(users)
}

impl UsersFileAuthenticator {
    /// Read the users file at `path`.
    ///
    /// # Errors
    /// [`AuthError::BadRequest`] if it cannot be read or has a bad line.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, AuthError> {
        let path = path.into();
        let stamp = stamp_of(&path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| AuthError::BadRequest(format!("cannot read {}: {e}", path.display())))?;
        let users = parse_users(&text, &path)?;
        Ok(UsersFileAuthenticator {
            path,
            cache: Mutex::new(UsersFileCache { stamp, users }),
        })
    }

    /// From config `args`: `{"path": "users.txt"}`.
    ///
    /// # Errors
    /// As [`UsersFileAuthenticator::new`], or a missing `path`.
    pub fn from_args(args: &Value) -> Result<Self, AuthError> {
        let path = args.get("path").and_then(Value::as_str).ok_or_else(|| {
            AuthError::BadRequest("UsersFileAuthenticator needs args.path".into())
        })?;
        Self::new(path)
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored hash for `username`, re-reading the file if it changed.
    fn lookup(&self, username: &str) -> Option<String> {
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let stamp = stamp_of(&self.path);
        if stamp != cache.stamp || stamp.is_none() {
            match std::fs::read_to_string(&self.path)
                .map_err(|e| {
                    AuthError::BadRequest(format!("cannot read {}: {e}", self.path.display()))
                })
                .and_then(|t| parse_users(&t, &self.path))
            {
                Ok(users) => {
                    tracing::info!(path = %self.path.display(), users = users.len(), "users file reloaded");
                    cache.users = users;
                    cache.stamp = stamp;
                }
                Err(e) => {
                    tracing::warn!("{e}; refusing all logins until it is fixed");
                    cache.users.clear();
                    // Retry on the next login.
                    cache.stamp = None;
                }
            }
        }
        cache.users.get(username).cloned()
    }
}

impl PasswordAuthenticator for UsersFileAuthenticator {
    fn authenticate(&self, username: &str, password: &str) -> Option<String> {
        // Verify outside the lock: argon2 is deliberately slow.
        let stored = self.lookup(username);
        check_stored(stored.as_deref(), password, true).then(|| username.to_string())
    }
}
