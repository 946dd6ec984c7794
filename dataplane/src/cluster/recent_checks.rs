//! A bounded memory of recent successful password checks, so that a storm
//! of reconnects (every client of a failed node coming back at once) costs
//! one keyed hash per client instead of one argon2id check each, without
//! weakening the stored hashes.
//!
//! What is held never contains a password: per username, a 32-byte BLAKE2b
//! MAC, keyed with a secret drawn at start and never written anywhere, over
//! the username, the stored PHC string and the password that matched it.
//! A later CONNECT is let in without argon2 only if the MAC of what it
//! presents equals the one held (compared in constant time). So:
//!
//! - only a password that argon2 accepted against the *current* hash can hit:
//!   a changed password (a new PHC string) or a removed user misses;
//! - wrong passwords never hit, and are never remembered: they still cost a
//!   full check and go through the pool's per-username and per-address caps;
//! - entries expire after `ttl`, and at most `capacity` are held (when full,
//!   the expired go first, then the oldest).
//!
//! Someone who can read this process's memory could test guesses against a
//! held MAC at BLAKE2b speed instead of argon2's, but only with the key,
//! which lives in the same memory as the live connections' sessions; that
//! is the trade this cache makes, and `auth.password_cache_entries = 0`
//! turns it off.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::Blake2bMac512;
use parking_lot::Mutex;

type Tag = [u8; 64];

/// The memory of recent successful checks.
pub struct RecentChecks {
    key: [u8; 32],
    capacity: usize,
    ttl: Duration,
    entries: Mutex<HashMap<Box<str>, (Tag, Instant)>>,
}

impl std::fmt::Debug for RecentChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentChecks").field("capacity", &self.capacity).field("ttl", &self.ttl).finish()
    }
}

impl RecentChecks {
    /// Holds at most `capacity` entries (0: remembers nothing) for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> RecentChecks {
        RecentChecks { key: rand::random(), capacity, ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn tag(&self, username: &str, phc: &str, password: &[u8]) -> Tag {
        let mut mac =
            <Blake2bMac512 as KeyInit>::new_from_slice(&self.key).expect("a 32-byte key fits BLAKE2b");
        for part in [username.as_bytes(), phc.as_bytes(), password] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize_fixed().into()
    }

    /// Whether `password` matched `phc` for `username` within the last `ttl`.
    pub fn matches(&self, username: &str, phc: &str, password: &[u8]) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let tag = self.tag(username, phc, password);
        let entries = self.entries.lock();
        match entries.get(username) {
            Some((held, at)) => at.elapsed() < self.ttl && constant_time_eq(held, &tag),
            None => false,
        }
    }

    /// Remembers that `password` matched `phc` for `username`.
    pub fn remember(&self, username: &str, phc: &str, password: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        let tag = self.tag(username, phc, password);
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity && !entries.contains_key(username) {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            while entries.len() >= self.capacity {
                let oldest = entries.iter().min_by_key(|(_, (_, at))| *at).map(|(name, _)| name.clone());
                match oldest {
                    Some(name) => entries.remove(&name),
                    None => break,
                };
            }
        }
        entries.insert(username.into(), (tag, now));
    }

    /// Entries held.
    pub fn held(&self) -> usize {
        self.entries.lock().len()
    }
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && left.iter().zip(right).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_password_that_matched_the_current_hash_hits() {
        let recent = RecentChecks::new(10, Duration::from_secs(60));
        assert!(!recent.matches("alice", "$hash1", b"pw"), "nothing remembered yet");
        recent.remember("alice", "$hash1", b"pw");
        assert!(recent.matches("alice", "$hash1", b"pw"));
        assert!(!recent.matches("alice", "$hash1", b"pw2"), "another password");
        assert!(!recent.matches("alice", "$hash2", b"pw"), "the password was changed");
        assert!(!recent.matches("bob", "$hash1", b"pw"), "another user");
        // Length-prefixed parts: moving bytes between them changes the tag.
        recent.remember("ab", "c", b"d");
        assert!(!recent.matches("a", "bc", b"d"));
    }

    #[test]
    fn no_password_is_held() {
        let recent = RecentChecks::new(10, Duration::from_secs(60));
        let password = b"correct horse battery staple";
        recent.remember("alice", "$hash", password);
        let entries = recent.entries.lock();
        let (tag, _) = entries.get("alice").unwrap();
        assert!(!tag.windows(password.len()).any(|w| w == password));
    }

    #[tokio::test]
    async fn entries_expire_and_are_bounded() {
        let recent = RecentChecks::new(3, Duration::from_millis(50));
        recent.remember("a", "$h", b"pw");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!recent.matches("a", "$h", b"pw"), "expired");
        let recent = RecentChecks::new(3, Duration::from_secs(60));
        for name in ["a", "b", "c", "d"] {
            recent.remember(name, "$h", b"pw");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(recent.held(), 3);
        assert!(!recent.matches("a", "$h", b"pw"), "the oldest went");
        assert!(recent.matches("d", "$h", b"pw"));
        let off = RecentChecks::new(0, Duration::from_secs(60));
        off.remember("a", "$h", b"pw");
        assert!(!off.matches("a", "$h", b"pw"));
    }
}
