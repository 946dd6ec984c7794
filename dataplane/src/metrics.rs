//! Broker-wide counters, read by `$SYS` and (later) the REST API.
//!
//! Plain relaxed atomics: each is exact on its own, and no reader needs two
//! of them to agree with each other.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one data-plane node.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub messages_retained_refused: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_malformed: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
