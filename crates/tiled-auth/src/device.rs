//! [`DeviceFlow`]: pending device-code authorizations for external
//! (OIDC) providers (spec §9.3, upstream's `PendingSession`).
//!
//! The terminal client asks to `start` (`POST provider/{p}/authorize`) and
//! gets a long secret `device_code` and a short `user_code`. The user opens
//! the provider's page in a browser, logs in, and types the user code; the
//! server then `approve`s it with the identity the provider vouched for.
//! Meanwhile the client `poll`s with its device code (`POST
//! provider/{p}/token`): pending → 400 `authorization_pending`, approved →
//! tokens (once), unknown or expired → 404.
//!
//! A server keeps the state in its authentication database
//! ([`DeviceFlow::in_store`], table `auth_pending_sessions`), so replicas
//! behind a load balancer share it: the authorize, approve and poll
//! requests of one login may reach different replicas. [`DeviceFlow::new`]
//! keeps it in memory instead (tests). Device codes are kept as SHA-256
//! digests, so neither a database dump nor a memory dump reveals live codes.
//! Entries expire after 15 minutes; at most [`MAX_PENDING`] are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::model::Identity;
use crate::store::PendingState;
use crate::{AuthError, AuthStore};

/// How long a device code is valid (upstream: 15 minutes).
pub const DEVICE_CODE_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// Suggested polling interval in seconds (upstream: 5).
pub const POLLING_INTERVAL: u64 = 5;
/// At most this many pending authorizations.
pub const MAX_PENDING: usize = 10_000;

/// What `start` hands the client.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceAuthorization {
    /// 32 random bytes as 64 hex characters; the client's secret.
    pub device_code: String,
    /// Eight upper-case hex characters as `ABCD-1234`; the user types it.
    pub user_code: String,
    /// Seconds until both codes expire (900).
    pub expires_in: u64,
    /// Suggested seconds between polls (5).
    pub interval: u64,
}

/// The answer to a poll.
#[derive(Clone, Debug, PartialEq)]
pub enum DevicePoll {
    /// The user has not approved yet.
    Pending,
    /// Approved by this identity; the authorization is now used up.
    Approved(Identity),
    /// It was valid but its time ran out.
    Expired,
    /// No such device code (never issued, already used, or purged).
    Unknown,
}

struct Pending {
    provider: String,
    user_code: String,
    expires: Instant,
    approved: Option<Identity>,
}

#[derive(Default)]
struct State {
    /// By the SHA-256 hex of the device code's bytes.
    by_device: HashMap<String, Pending>,
    /// Normalized user code → device-code digest.
    by_user: HashMap<String, String>,
}

/// Pending device-code authorizations, in the authentication database or
/// in memory.
pub struct DeviceFlow {
    max_age: Duration,
    state: Mutex<State>,
    /// Where the state lives when it is shared ([`DeviceFlow::in_store`]).
    store: Option<Arc<AuthStore>>,
}

impl std::fmt::Debug for DeviceFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceFlow")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl Default for DeviceFlow {
    fn default() -> Self {
        DeviceFlow::new(DEVICE_CODE_MAX_AGE)
    }
}

fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `abcd-1234 ` → `ABCD1234`, as upstream normalizes what users type.
fn normalize_user_code(code: &str) -> String {
    code.trim().to_ascii_uppercase().replace('-', "")
}

impl DeviceFlow {
    /// Authorizations valid for `max_age` (tests use short ones).
    pub fn new(max_age: Duration) -> Self {
        DeviceFlow {
            max_age,
            state: Mutex::new(State::default()),
            store: None,
        }
    }

    /// Authorizations kept in `store`, shared by every replica using it.
    pub fn in_store(store: Arc<AuthStore>, max_age: Duration) -> Self {
        DeviceFlow {
            max_age,
            state: Mutex::new(State::default()),
            store: Some(store),
        }
    }

    fn new_codes() -> ([u8; 32], String) {
        let mut rng = rand::rng();
        let mut device = [0u8; 32];
        rng.fill_bytes(&mut device);
        let mut b = [0u8; 4];
        rng.fill_bytes(&mut b);
        (device, hex::encode_upper(b))
    }

    fn authorization(&self, device: &[u8; 32], user_code: &str) -> DeviceAuthorization {
        DeviceAuthorization {
            device_code: hex::encode(device),
            user_code: format!("{}-{}", &user_code[..4], &user_code[4..]),
            expires_in: self.max_age.as_secs(),
            interval: POLLING_INTERVAL,
        }
    }

    fn invalid_user_code() -> AuthError {
        AuthError::NotFound(
            "Invalid user code. It may have been mistyped, or the pending request may have expired."
                .into(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn purge(state: &mut State, now: Instant) {
        let State { by_device, by_user } = state;
        by_device.retain(|_, p| {
            let keep = p.expires > now;
            if !keep {
                by_user.remove(&p.user_code);
            }
            keep
        });
    }

    /// Begin an authorization with `provider`.
    ///
    /// # Errors
    /// [`AuthError::TooManyAttempts`] when [`MAX_PENDING`] authorizations
    /// are already pending.
    pub fn start(&self, provider: &str) -> Result<DeviceAuthorization, AuthError> {
        if let Some(store) = &self.store {
            let expires = chrono::Utc::now()
                + chrono::TimeDelta::from_std(self.max_age)
                    .map_err(|e| AuthError::Internal(e.to_string()))?;
            // User codes are short: draw again on a collision.
            for _ in 0..16 {
                let (device, user_code) = Self::new_codes();
                if store.pending_insert(
                    &digest_hex(&device),
                    &user_code,
                    provider,
                    expires,
                    MAX_PENDING,
                    POLLING_INTERVAL,
                )? {
                    return Ok(self.authorization(&device, &user_code));
                }
            }
            return Err(AuthError::Internal("no free user code".into()));
        }
        let now = Instant::now();
        let mut state = self.lock();
        Self::purge(&mut state, now);
        if state.by_device.len() >= MAX_PENDING {
            return Err(AuthError::TooManyAttempts {
                retry_after_secs: POLLING_INTERVAL,
            });
        }
        // A fresh user code (they are short: retry on a collision).
        let (device, user_code) = loop {
            let (device, code) = Self::new_codes();
            if !state.by_user.contains_key(&code) {
                break (device, code);
            }
        };
        let digest = digest_hex(&device);
        state.by_user.insert(user_code.clone(), digest.clone());
        state.by_device.insert(
            digest,
            Pending {
                provider: provider.to_string(),
                user_code: user_code.clone(),
                expires: now + self.max_age,
                approved: None,
            },
        );
        Ok(self.authorization(&device, &user_code))
    }

    /// The provider a pending user code was started with (to check it
    /// against the route that approves it).
    pub fn provider_of(&self, user_code: &str) -> Option<String> {
        if let Some(store) = &self.store {
            return store
                .pending_provider(&normalize_user_code(user_code))
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot read pending device-code logins");
                    None
                });
        }
        let now = Instant::now();
        let state = self.lock();
        let digest = state.by_user.get(&normalize_user_code(user_code))?;
        state
            .by_device
            .get(digest)
            .filter(|p| p.expires > now)
            .map(|p| p.provider.clone())
    }

    /// The user typed `user_code` and the provider vouched for `id`: approve
    /// the authorization, as identity (`provider` of the start, `id`).
    ///
    /// # Errors
    /// [`AuthError::NotFound`] for an unknown, expired or already approved
    /// user code.
    pub fn approve(&self, user_code: &str, id: &str) -> Result<Identity, AuthError> {
        let invalid = Self::invalid_user_code;
        if let Some(store) = &self.store {
            return match store.pending_approve(&normalize_user_code(user_code), id)? {
                Some(provider) => Ok(Identity::new(provider, id)),
                None => Err(invalid()),
            };
        }
        let now = Instant::now();
        let mut state = self.lock();
        let digest = state
            .by_user
            .get(&normalize_user_code(user_code))
            .cloned()
            .ok_or_else(invalid)?;
        let pending = state.by_device.get_mut(&digest).ok_or_else(invalid)?;
        if pending.expires <= now || pending.approved.is_some() {
            return Err(invalid());
        }
        let identity = Identity::new(pending.provider.clone(), id);
        pending.approved = Some(identity.clone());
        Ok(identity)
    }

    /// Where the authorization with `device_code` stands. An approval is
    /// handed out once; an expired entry is dropped.
    pub fn poll(&self, device_code: &str) -> DevicePoll {
        let Ok(bytes) = hex::decode(device_code.trim()) else {
            return DevicePoll::Unknown;
        };
        let digest = digest_hex(&bytes);
        if let Some(store) = &self.store {
            return match store.pending_take(&digest) {
                Ok(PendingState::Pending) => DevicePoll::Pending,
                Ok(PendingState::Approved(who)) => DevicePoll::Approved(who),
                Ok(PendingState::Expired) => DevicePoll::Expired,
                Ok(PendingState::Unknown) => DevicePoll::Unknown,
                Err(e) => {
                    // The client keeps polling; a later poll may succeed.
                    tracing::warn!(error = %e, "cannot read pending device-code logins");
                    DevicePoll::Pending
                }
            };
        }
        let now = Instant::now();
        let mut state = self.lock();
        let Some(pending) = state.by_device.get(&digest) else {
            return DevicePoll::Unknown;
        };
        if pending.expires <= now {
            if let Some(p) = state.by_device.remove(&digest) {
                state.by_user.remove(&p.user_code);
            }
            return DevicePoll::Expired;
        }
        if pending.approved.is_none() {
            return DevicePoll::Pending;
        }
        match state.by_device.remove(&digest) {
            Some(p) => {
                state.by_user.remove(&p.user_code);
                p.approved.map_or(DevicePoll::Unknown, DevicePoll::Approved)
            }
            None => DevicePoll::Unknown,
        }
    }

    /// How many authorizations are pending (expired ones included until
    /// purged).
    pub fn pending(&self) -> usize {
        match &self.store {
            Some(store) => store.pending_count().unwrap_or(0),
            None => self.lock().by_device.len(),
        }
    }
}
