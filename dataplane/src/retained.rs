//! The retained message store: one message per topic name.
//!
//! A retained PUBLISH with an empty payload deletes the topic's message.
//! Limits on the number of messages and on payload size refuse new topics
//! (replacing an existing topic is always allowed within the size limit).
//! Expired messages are dropped when they are found. The broker's own
//! `$SYS` topics do not count against the limit on the number of messages.
//!
//! In a fleet every node holds every retained message (see `broker`): each
//! one carries a [`Version`] (the time it was set, then the node that set
//! it), and a change older than what is held (or than a recent deletion,
//! remembered for [`TOMBSTONE_FOR`]) is ignored, so nodes that hear of two
//! changes in different orders end with the same message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};

use crate::config::RetainerConfig;
use crate::message::Message;
use crate::topic;

/// What `RetainStore::store` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainOutcome {
    Stored,
    Deleted,
    /// Refused by a limit.
    Refused,
    /// Older than what is held: ignored.
    Stale,
}

/// When a retained message was set, and where: later versions win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Version {
    /// Microseconds since the Unix epoch on the node that set it.
    pub micros: u64,
    /// That node's id (0 outside a fleet).
    pub node: u64,
}

impl Version {
    /// A version for a change made now on `node`.
    pub fn now(node: u64) -> Version {
        let micros = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros().min(u64::MAX as u128) as u64);
        Version { micros, node }
    }
}

/// How long a deletion is remembered, so that an older set heard later
/// does not bring the message back.
pub const TOMBSTONE_FOR: Duration = Duration::from_secs(600);

/// Deletions remembered at most.
const MAX_TOMBSTONES: usize = 100_000;

#[derive(Debug)]
struct Entry {
    message: Arc<Message>,
    version: Version,
}

/// Retained messages by topic.
#[derive(Debug)]
pub struct RetainStore {
    messages: RwLock<HashMap<String, Entry>>,
    /// Recent deletions: topic → (its version, when it was made here).
    tombstones: Mutex<HashMap<String, (Version, Instant)>>,
    /// Messages outside `$SYS/`, the ones the count limit applies to.
    client_count: std::sync::atomic::AtomicUsize,
    limits: RetainerConfig,
}

impl RetainStore {
    pub fn new(limits: RetainerConfig) -> RetainStore {
        RetainStore {
            messages: RwLock::new(HashMap::new()),
            tombstones: Mutex::new(HashMap::new()),
            client_count: Default::default(),
            limits,
        }
    }

    /// Sets, replaces or (empty payload) deletes the topic's retained message.
    #[cfg(test)]
    pub fn store(&self, message: &Arc<Message>) -> RetainOutcome {
        self.store_at(message, Version::now(0))
    }

    /// Sets, replaces or (empty payload) deletes the topic's retained
    /// message, unless what is held for the topic (or a
    /// recent deletion of it) is newer than `version`: then nothing changes
    /// ([`RetainOutcome::Stale`]).
    pub fn store_at(&self, message: &Arc<Message>, version: Version) -> RetainOutcome {
        use std::sync::atomic::Ordering::Relaxed;
        let counted = !message.topic.starts_with("$SYS/");
        let mut messages = self.messages.write();
        if messages.get(&message.topic).is_some_and(|held| held.version > version) {
            return RetainOutcome::Stale;
        }
        {
            let mut tombstones = self.tombstones.lock();
            if let Some((deleted, _)) = tombstones.get(&message.topic) {
                if *deleted > version {
                    return RetainOutcome::Stale;
                }
                tombstones.remove(&message.topic);
            }
            // A deletion of what is held is remembered (while there is room:
            // a full set of recent deletions takes no more until they expire).
            let held = messages.contains_key(&message.topic);
            if message.payload.is_empty() && held && tombstones.len() < MAX_TOMBSTONES {
                tombstones.insert(message.topic.clone(), (version, Instant::now()));
            }
        }
        if message.payload.is_empty() {
            if messages.remove(&message.topic).is_some() && counted {
                self.client_count.fetch_sub(1, Relaxed);
            }
            return RetainOutcome::Deleted;
        }
        if self.limits.max_payload_size > 0 && message.payload.len() > self.limits.max_payload_size {
            return RetainOutcome::Refused;
        }
        let is_new = !messages.contains_key(&message.topic);
        if counted
            && is_new
            && self.limits.max_retained_messages > 0
            && self.client_count.load(Relaxed) >= self.limits.max_retained_messages
        {
            return RetainOutcome::Refused;
        }
        messages.insert(message.topic.clone(), Entry { message: message.clone(), version });
        if counted && is_new {
            self.client_count.fetch_add(1, Relaxed);
        }
        RetainOutcome::Stored
    }

    /// Retained messages whose topic matches `filter`, oldest topic order not guaranteed.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let now = Instant::now();
        let messages = self.messages.read();
        if !topic::has_wildcard(filter) {
            return messages
                .get(filter)
                .map(|e| &e.message)
                .filter(|m| !m.is_expired(now))
                .cloned()
                .into_iter()
                .collect();
        }
        messages
            .values()
            .map(|e| &e.message)
            .filter(|m| !m.is_expired(now) && topic::matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    /// Every retained message outside `$SYS/` with its version (for a node
    /// that joins the fleet), in chunks of about `chunk_bytes` of payload.
    pub fn versions(&self, chunk_bytes: usize) -> Vec<Vec<(Arc<Message>, Version)>> {
        let now = Instant::now();
        let messages = self.messages.read();
        let mut chunks = vec![Vec::new()];
        let mut bytes = 0usize;
        for entry in messages.values() {
            if entry.message.topic.starts_with("$SYS/") || entry.message.is_expired(now) {
                continue;
            }
            if bytes >= chunk_bytes {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += entry.message.payload.len() + entry.message.topic.len();
            if let Some(chunk) = chunks.last_mut() {
                chunk.push((entry.message.clone(), entry.version));
            }
        }
        chunks
    }

    /// Number of retained messages.
    pub fn count(&self) -> usize {
        self.messages.read().len()
    }

    /// Drops expired messages.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        let mut messages = self.messages.write();
        messages.retain(|_, e| !e.message.is_expired(now));
        self.tombstones.lock().retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_FOR);
        let counted = messages.keys().filter(|t| !t.starts_with("$SYS/")).count();
        self.client_count.store(counted, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_codec::QoS;

    fn msg(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            id: crate::message::next_id(),
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            publisher: None,
            expires_at: None,
        })
    }

    #[test]
    fn set_replace_delete_and_match() {
        let store = RetainStore::new(RetainerConfig::default());
        assert_eq!(store.store(&msg("a/b", b"1")), RetainOutcome::Stored);
        assert_eq!(store.store(&msg("a/b", b"2")), RetainOutcome::Stored);
        assert_eq!(store.store(&msg("a/c", b"3")), RetainOutcome::Stored);
        assert_eq!(store.matching("a/b")[0].payload, Bytes::from_static(b"2"));
        assert_eq!(store.matching("a/+").len(), 2);
        assert_eq!(store.store(&msg("a/b", b"")), RetainOutcome::Deleted);
        assert_eq!(store.matching("#").len(), 1);
    }

    #[test]
    fn older_changes_lose_in_any_order() {
        let store = RetainStore::new(RetainerConfig::default());
        let v = |micros, node| Version { micros, node };
        assert_eq!(store.store_at(&msg("t", b"new"), v(20, 1)), RetainOutcome::Stored);
        assert_eq!(store.store_at(&msg("t", b"old"), v(10, 2)), RetainOutcome::Stale);
        assert_eq!(store.matching("t")[0].payload, Bytes::from_static(b"new"));
        assert_eq!(store.store_at(&msg("t", b"tie"), v(20, 2)), RetainOutcome::Stored, "node id breaks ties");
        // A deletion, then an older set heard late: stays deleted.
        assert_eq!(store.store_at(&msg("t", b""), v(30, 1)), RetainOutcome::Deleted);
        assert_eq!(store.store_at(&msg("t", b"late"), v(25, 3)), RetainOutcome::Stale);
        assert!(store.matching("t").is_empty());
        assert_eq!(store.store_at(&msg("t", b"again"), v(31, 3)), RetainOutcome::Stored);
        assert_eq!(store.versions(1).iter().flatten().count(), 1);
        assert_eq!(store.store_at(&msg("$SYS/x", b"1"), v(1, 1)), RetainOutcome::Stored);
        assert_eq!(store.versions(1 << 20).iter().flatten().count(), 1, "$SYS stays on its node");
    }

    #[test]
    fn limits_refuse_new_topics() {
        let store = RetainStore::new(RetainerConfig { max_retained_messages: 1, max_payload_size: 2 });
        assert_eq!(store.store(&msg("a", b"1")), RetainOutcome::Stored);
        assert_eq!(store.store(&msg("b", b"1")), RetainOutcome::Refused);
        assert_eq!(store.store(&msg("a", b"22")), RetainOutcome::Stored);
        assert_eq!(store.store(&msg("a", b"333")), RetainOutcome::Refused);
        assert_eq!(store.count(), 1);
        assert_eq!(store.store(&msg("$SYS/x", b"1")), RetainOutcome::Stored, "$SYS is not counted");
        assert_eq!(store.store(&msg("a", b"")), RetainOutcome::Deleted);
        assert_eq!(store.store(&msg("b", b"1")), RetainOutcome::Stored);
    }
}
