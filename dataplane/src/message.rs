//! The internal message model: a message is built once per publish and
//! shared by every subscriber it reaches through an `Arc`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mqtt_codec::{PublishProperties, QoS};

/// A published application message, as routed inside the broker.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique in the fleet (see [`next_id`]): tells the copies of one
    /// message apart from a second message with the same content.
    pub id: u64,
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The publisher's properties minus Topic Alias and Subscription Identifiers.
    pub properties: PublishProperties,
    /// Client identifier of the publisher, for No Local; `None` for the broker itself.
    pub publisher: Option<Arc<str>>,
    /// When the Message Expiry Interval runs out.
    pub expires_at: Option<Instant>,
}

/// A message id no process of the fleet hands out twice, as far as
/// 64 bits allow: a random 24-bit prefix per process, then a counter.
pub fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let prefix = *PREFIX.get_or_init(|| (rand::random::<u64>() & 0xff_ffff) << 40);
    prefix | (COUNTER.fetch_add(1, Ordering::Relaxed) & ((1 << 40) - 1))
}

impl Message {
    /// True once the message's expiry interval has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Seconds of expiry left (at least 1), for the outgoing Message Expiry Interval.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now).as_secs_f64().ceil() as u64;
            left.clamp(1, u32::MAX as u64) as u32
        })
    }
}

/// A will message, its delay, and who set it: it is authorized as that
/// client's publish again when it is sent, since rules may have changed.
#[derive(Debug, Clone)]
pub struct Will {
    pub message: Arc<Message>,
    /// Will Delay Interval, in seconds.
    pub delay: u32,
    pub identity: crate::cluster::access::Identity,
}

/// Identifies a shared subscription group: the group name and its filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareKey {
    pub group: Arc<str>,
    pub filter: Arc<str>,
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// The QoS it goes out with: the message's, capped by the subscription's.
    pub qos: QoS,
    /// The RETAIN flag it goes out with.
    pub retain: bool,
    /// Identifiers of the subscriptions it matched (MQTT 5.0).
    pub subscription_ids: Vec<u32>,
    /// Set when it reached this session through a shared subscription, so
    /// that it can go to another member if this one leaves before acking.
    pub share: Option<ShareKey>,
}
