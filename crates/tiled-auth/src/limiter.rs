//! [`LoginLimiter`]: throttles password guessing. After `max_failures`
//! failed logins for one username from one client address within
//! `window`, further attempts are refused (without checking the password)
//! until the oldest failure leaves the window; a success clears the count.
//!
//! State is in memory, per process: behind a load balancer each replica
//! counts on its own, so the effective limit is `max_failures × replicas`
//! (still a bound). Memory is bounded: stale entries are dropped, and past
//! [`MAX_TRACKED`] keys the oldest are forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::AuthError;

/// Default: failures allowed per window.
pub const DEFAULT_MAX_FAILURES: usize = 10;
/// Default: the window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// At most this many (username, address) pairs are tracked.
pub const MAX_TRACKED: usize = 100_000;

type Key = (String, String);

/// Failed-login throttling per (username, client address).
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(DEFAULT_MAX_FAILURES, DEFAULT_WINDOW)
    }
}

impl LoginLimiter {
    /// Allow `max_failures` failures per `window` (at least 1).
    pub fn new(max_failures: usize, window: Duration) -> Self {
        LoginLimiter {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn key(username: &str, client_ip: &str) -> Key {
        (username.to_string(), client_ip.to_string())
    }

    fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
    }

    /// May this username try to log in from this address now?
    ///
    /// # Errors
    /// [`AuthError::TooManyAttempts`] with the seconds to wait.
    pub fn check(&self, username: &str, client_ip: &str) -> Result<(), AuthError> {
        let now = Instant::now();
        let mut map = self.lock();
        let key = Self::key(username, client_ip);
        let Some(q) = map.get_mut(&key) else {
            return Ok(());
        };
        Self::prune(q, now, self.window);
        if q.is_empty() {
            map.remove(&key);
            return Ok(());
        }
        if q.len() >= self.max_failures {
            // Free once the oldest failures within the excess leave the window.
            let idx = q.len() - self.max_failures;
            let wait = q
                .get(idx)
                .map(|t| self.window.saturating_sub(now.duration_since(*t)))
                .unwrap_or_default();
            return Err(AuthError::TooManyAttempts {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        Ok(())
    }

    /// Count a failed login.
    pub fn record_failure(&self, username: &str, client_ip: &str) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if map.len() >= MAX_TRACKED {
                // Still full of fresh entries: forget the stalest half.
                let mut lasts: Vec<Instant> =
                    map.values().filter_map(|q| q.back().copied()).collect();
                lasts.sort();
                if let Some(cut) = lasts.get(lasts.len() / 2).copied() {
                    map.retain(|_, q| q.back().is_some_and(|t| *t > cut));
                }
            }
        }
        let q = map.entry(Self::key(username, client_ip)).or_default();
        Self::prune(q, now, self.window);
        q.push_back(now);
        // Never keep more than needed to decide.
        while q.len() > self.max_failures {
            q.pop_front();
        }
    }

    /// A successful login clears the count.
    pub fn record_success(&self, username: &str, client_ip: &str) {
        self.lock().remove(&Self::key(username, client_ip));
    }

    /// How many (username, address) pairs are tracked.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}
