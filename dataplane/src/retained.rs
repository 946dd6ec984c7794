//! The retained message store: one message per topic name.
//!
//! A retained PUBLISH with an empty payload deletes the topic's message.
//! Limits on the number of messages and on payload size refuse new topics
//! (replacing an existing topic is always allowed within the size limit).
//! Expired messages are dropped when they are found. The broker's own
//! `$SYS` topics do not count against the limit on the number of messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

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
}

/// Retained messages by topic.
#[derive(Debug)]
pub struct RetainStore {
    messages: RwLock<HashMap<String, Arc<Message>>>,
    /// Messages outside `$SYS/`, the ones the count limit applies to.
    client_count: std::sync::atomic::AtomicUsize,
    limits: RetainerConfig,
}

impl RetainStore {
    pub fn new(limits: RetainerConfig) -> RetainStore {
        RetainStore { messages: RwLock::new(HashMap::new()), client_count: Default::default(), limits }
    }

    /// Sets, replaces or (empty payload) deletes the topic's retained message.
    pub fn store(&self, message: &Arc<Message>) -> RetainOutcome {
        use std::sync::atomic::Ordering::Relaxed;
        let counted = !message.topic.starts_with("$SYS/");
        let mut messages = self.messages.write();
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
        messages.insert(message.topic.clone(), message.clone());
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
            return messages.get(filter).filter(|m| !m.is_expired(now)).cloned().into_iter().collect();
        }
        messages
            .values()
            .filter(|m| !m.is_expired(now) && topic::matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    /// Number of retained messages.
    pub fn count(&self) -> usize {
        self.messages.read().len()
    }

    /// Drops expired messages.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        let mut messages = self.messages.write();
        messages.retain(|_, m| !m.is_expired(now));
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
