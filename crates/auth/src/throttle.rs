//! A throttle on failed logins (ASVS 6.3.1): after [`FREE_FAILURES`] failures for one user name,
//! or from one client address, each further attempt must wait twice as long as the last (1 s,
//! 2 s, 4 s, ... up to [`MAX_DELAY`]); attempts inside the wait are refused with the time left
//! (HTTP 429 with `Retry-After`) without checking the password. A success clears the user's
//! count; a quiet [`FORGET_AFTER`] clears any count. There is no lockout: the owner of an
//! account under attack can always log in after the wait, and an attacker gains no way to lock
//! them out for longer than [`MAX_DELAY`].
//!
//! The counts are per process (each replica throttles on its own), bounded in memory.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// Failures allowed before waits begin.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A count not added to for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// When the next attempt may be made, if it must wait.
    fn wait_until(&self) -> Option<Instant> {
        if self.count < FREE_FAILURES {
            return None;
        }
        let exponent = (self.count - FREE_FAILURES).min(10);
        let delay = Duration::from_secs(1u64 << exponent).min(MAX_DELAY);
        Some(self.last + delay)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    User(u64),
    Client(IpAddr),
}

fn user_key(username: &str) -> Key {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    username.to_lowercase().hash(&mut h);
    Key::User(h.finish())
}

/// Failed-login counts by user name and by client address.
pub struct Throttle {
    failures: Mutex<LruCache<Key, Failures>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(100_000)
    }
}

impl Throttle {
    pub fn new(capacity: usize) -> Throttle {
        let capacity = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Throttle { failures: Mutex::new(LruCache::new(capacity)) }
    }

    /// `Err(wait)` when an attempt for `username` from `client` must wait `wait` more.
    pub fn check(&self, username: &str, client: IpAddr) -> Result<(), Duration> {
        self.check_at(username, client, Instant::now())
    }

    fn check_at(&self, username: &str, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut longest = None;
        for key in [user_key(username), Key::Client(client)] {
            let Some(f) = failures.get(&key).copied() else { continue };
            if now.duration_since(f.last) > FORGET_AFTER {
                failures.pop(&key);
                continue;
            }
            if let Some(until) = f.wait_until()
                && until > now
            {
                let wait = until - now;
                longest = Some(longest.map_or(wait, |l: Duration| l.max(wait)));
            }
        }
        longest.map_or(Ok(()), Err)
    }

    /// Counts a failed attempt.
    pub fn failed(&self, username: &str, client: IpAddr) {
        self.failed_at(username, client, Instant::now());
    }

    fn failed_at(&self, username: &str, client: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in [user_key(username), Key::Client(client)] {
            let next = match failures.get(&key) {
                Some(f) if now.duration_since(f.last) <= FORGET_AFTER => Failures { count: f.count + 1, last: now },
                _ => Failures { count: 1, last: now },
            };
            failures.put(key, next);
        }
    }

    /// Clears `username`'s count after a success (the address's stays: one address guessing
    /// many names is still throttled).
    pub fn succeeded(&self, username: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).pop(&user_key(username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn waits_begin_after_the_free_failures_and_double_up_to_the_cap() {
        let t = Throttle::new(100);
        let start = Instant::now();
        for i in 0..FREE_FAILURES {
            assert!(t.check_at("ana", HOME, start).is_ok(), "attempt {i}");
            t.failed_at("ana", HOME, start);
        }
        // The sixth attempt waits 1 s; after a failure at 1 s, the next waits 2 s more.
        assert_eq!(t.check_at("ana", HOME, start), Err(Duration::from_secs(1)));
        let later = start + Duration::from_secs(1);
        assert!(t.check_at("ana", HOME, later).is_ok());
        t.failed_at("ana", HOME, later);
        assert_eq!(t.check_at("ana", HOME, later), Err(Duration::from_secs(2)));
        // The same name from another address waits too; another name from this address too.
        assert!(t.check_at("ana", AWAY, later).is_err());
        assert!(t.check_at("bob", HOME, later).is_err());
        assert!(t.check_at("bob", AWAY, later).is_ok());
        // Never more than the cap.
        let mut now = later;
        for _ in 0..20 {
            now += MAX_DELAY;
            t.failed_at("ana", HOME, now);
        }
        assert_eq!(t.check_at("ana", HOME, now), Err(MAX_DELAY));
        // Quiet long enough: forgotten.
        assert!(t.check_at("ana", HOME, now + FORGET_AFTER + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn a_success_clears_the_name_but_not_the_address() {
        let t = Throttle::new(100);
        let now = Instant::now();
        for _ in 0..FREE_FAILURES + 1 {
            t.failed_at("ana", HOME, now);
        }
        t.succeeded("Ana");
        assert!(t.check_at("ana", AWAY, now).is_ok());
        assert!(t.check_at("ana", HOME, now).is_err(), "the address keeps its count");
    }
}
