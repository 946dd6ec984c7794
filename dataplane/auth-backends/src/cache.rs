//! A bounded memory of a backend's answers, with a time to live, so that a
//! reconnect storm does not become a request storm against the backend.
//!
//! What is held never contains a password: an answer is filed under a
//! BLAKE2b MAC, keyed with a secret drawn at start and never written
//! anywhere, over everything the request was made of (length-prefixed, so
//! that `("ab", "c")` and `("a", "bc")` differ). Only answers the backend
//! gave are held, never a failure. At most `capacity` entries: when full,
//! the expired ones go; if none has expired, the new answer is not held.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::Blake2bMac512;
use parking_lot::Mutex;

type Tag = [u8; 64];

pub(crate) struct AnswerCache<T> {
    key: [u8; 32],
    capacity: usize,
    ttl: Duration,
    entries: Mutex<HashMap<Tag, (T, Instant)>>,
}

impl<T: Clone> AnswerCache<T> {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> AnswerCache<T> {
        AnswerCache { key: rand::random(), capacity, ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn tag(&self, parts: &[&[u8]]) -> Tag {
        let mut mac = <Blake2bMac512 as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| {
            // 32 bytes is a valid BLAKE2b key length: this cannot happen.
            <Blake2bMac512 as KeyInit>::new(&Default::default())
        });
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize_fixed().into()
    }

    /// The answer held for this request, if it has not expired.
    pub(crate) fn get(&self, parts: &[&[u8]]) -> Option<T> {
        if self.capacity == 0 {
            return None;
        }
        let tag = self.tag(parts);
        let entries = self.entries.lock();
        let (answer, at) = entries.get(&tag)?;
        (at.elapsed() < self.ttl).then(|| answer.clone())
    }

    pub(crate) fn put(&self, parts: &[&[u8]], answer: T) {
        if self.capacity == 0 {
            return;
        }
        let tag = self.tag(parts);
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&tag) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(tag, (answer, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_held_apart_bounded_and_expire() {
        let cache = AnswerCache::new(2, Duration::from_millis(100));
        cache.put(&[b"ab", b"c"], 1);
        assert_eq!(cache.get(&[b"ab", b"c"]), Some(1));
        assert_eq!(cache.get(&[b"a", b"bc"]), None, "parts are length-prefixed");
        cache.put(&[b"x"], 2);
        cache.put(&[b"y"], 3);
        assert_eq!(cache.get(&[b"y"]), None, "full, nothing expired: not held");
        let slept = Instant::now();
        while slept.elapsed() < Duration::from_millis(150) {
            std::thread::park_timeout(Duration::from_millis(150));
        }
        assert_eq!(cache.get(&[b"ab", b"c"]), None, "expired");
        cache.put(&[b"y"], 3);
        assert_eq!(cache.get(&[b"y"]), Some(3), "room made by dropping the expired");
        let off = AnswerCache::new(0, Duration::from_secs(1));
        off.put(&[b"x"], 1);
        assert_eq!(off.get(&[b"x"]), None);
    }
}
