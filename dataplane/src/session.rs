//! The state of one MQTT session, which outlives its connections.
//!
//! A session owns its subscriptions, its queue (the mailbox), the outgoing
//! QoS 1/2 messages not yet acknowledged (with the packet identifiers they
//! went out with, so that they can be resent with DUP after a reconnect) and
//! the incoming QoS 2 packet identifiers awaiting PUBREL (so that a QoS 2
//! message resent after a reconnect is not routed twice).
//! Invariant: `inflight` never holds more entries than the window the
//! connection announced, and packet identifiers in it are unique.

use crate::lazymap::LazyMap;
use crate::smallmap::SmallMap;
use std::sync::Arc;

use mqtt_codec::SubscriptionOptions;

use crate::cluster::access::Identity;
use crate::mailbox::Mailbox;
use crate::message::{Delivery, Message};
use crate::router::{SessionId, Subscriber};

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingState {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// One outgoing message awaiting acknowledgement.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// Send order, for redelivery in the original order.
    pub seq: u64,
    pub delivery: Delivery,
    pub state: OutgoingState,
}

/// A subscription as the session remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSubscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// Session state.
#[derive(Debug)]
pub struct SessionState {
    pub id: SessionId,
    /// Who holds (or last held) the session: its username owns it (only
    /// that username may resume it), and ACL rechecks judge its
    /// subscriptions as this client's.
    pub identity: Identity,
    pub mailbox: Arc<Mailbox>,
    /// By the filter exactly as subscribed (prefixes included).
    pub subscriptions: SmallMap<Box<str>, SessionSubscription>,
    pub inflight: LazyMap<u16, Inflight>,
    /// Incoming QoS 2 messages, allowed and held until their PUBREL
    /// routes them (as Mosquitto does: a client subscribed to its own topic
    /// gets the message after its PUBCOMP, which client code relies on).
    pub awaiting_rel: LazyMap<u16, Message>,
    next_packet_id: u16,
    next_seq: u64,
}

impl SessionState {
    pub fn new(id: SessionId, client_id: Arc<str>) -> SessionState {
        SessionState {
            id,
            identity: Identity::anonymous(client_id, std::net::Ipv4Addr::UNSPECIFIED.into()),
            mailbox: Arc::new(Mailbox::new()),
            subscriptions: SmallMap::new(),
            inflight: LazyMap::new(),
            awaiting_rel: LazyMap::new(),
            next_packet_id: 1,
            next_seq: 0,
        }
    }

    /// The client identifier the session is for (held once, in its identity).
    pub fn client_id(&self) -> &Arc<str> {
        &self.identity.client_id
    }

    /// The router's handle on this session.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber { session: self.id, client_id: self.client_id().clone(), mailbox: self.mailbox.clone() }
    }

    /// A packet identifier not in use by an outgoing message.
    pub fn allocate_packet_id(&mut self) -> Option<u16> {
        if self.inflight.len() >= u16::MAX as usize {
            return None;
        }
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&id) {
                return Some(id);
            }
        }
    }

    /// Records an outgoing QoS 1/2 message.
    pub fn track(&mut self, packet_id: u16, delivery: Delivery) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight.insert(packet_id, Inflight { seq, delivery, state: OutgoingState::Published });
    }

    /// Records an outgoing message that came with a session from another
    /// node (after those already recorded, in the order they come).
    pub fn restore_inflight(&mut self, packet_id: u16, delivery: Delivery, released: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let state = if released { OutgoingState::Released } else { OutgoingState::Published };
        self.inflight.insert(packet_id, Inflight { seq, delivery, state });
        if packet_id >= self.next_packet_id {
            self.next_packet_id = packet_id.checked_add(1).unwrap_or(1);
        }
    }

    /// Outgoing messages in the order they were first sent.
    pub fn inflight_in_order(&self) -> Vec<(u16, Inflight)> {
        let mut entries: Vec<(u16, Inflight)> =
            self.inflight.iter().map(|(id, e)| (*id, e.clone())).collect();
        entries.sort_by_key(|(_, e)| e.seq);
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_skip_those_in_use_and_wrap_past_zero() {
        let mut state = SessionState::new(1, Arc::from("c"));
        state.next_packet_id = u16::MAX;
        let first = state.allocate_packet_id();
        assert_eq!(first, Some(u16::MAX));
        let delivery = Delivery {
            message: Arc::new(crate::message::Message {
                id: crate::message::next_id(),
                topic: "t".into(),
                payload: Default::default(),
                qos: mqtt_codec::QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
                publisher: None,
                expires_at: None,
            }),
            qos: mqtt_codec::QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
            share: None,
        };
        state.track(1, delivery);
        assert_eq!(state.allocate_packet_id(), Some(2));
    }
}
