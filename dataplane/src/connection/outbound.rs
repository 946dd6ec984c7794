//! Deliveries to the client: draining the mailbox into PUBLISH packets,
//! packet identifiers, outgoing topic aliases, and resending unacknowledged
//! messages after a reconnect.
//!
//! Invariants: at most `window` QoS 1/2 messages are unacknowledged at once;
//! a packet larger than the client's Maximum Packet Size is never sent (the
//! message is dropped and counted); expired messages are dropped, and the
//! rest carry the expiry time they have left.

use std::time::Instant as StdInstant;

use mqtt_codec::{AckProperties, Packet, PubAck, PublishRef, QoS, ReasonCode};

use super::{Close, Connection};
use crate::hooks::DropReason;
use crate::message::Delivery;
use crate::metrics::Metrics;
use crate::session::OutgoingState;
use crate::transport::Transport;

/// Deliveries taken from the mailbox per turn of the loop, so that one
/// busy subscriber cannot grow its write buffer without bound.
const BATCH: usize = 256;

impl<T: Transport> Connection<T> {
    /// Moves queued deliveries into the write buffer, as the window allows.
    /// When it stops at the batch limit with more waiting, it leaves a
    /// wake-up so that the loop comes back after writing this batch (a
    /// backlog must not wait for the next publish to move again).
    pub(super) fn pump(&mut self) -> Result<(), Close> {
        if !self.acks.is_empty() {
            self.release_acks()?;
        }
        let mut batch = Vec::new();
        let window = (self.limits.window as usize).saturating_sub(self.session.inflight.len());
        self.session.mailbox.drain_into(&mut batch, window, BATCH);
        if batch.len() == BATCH {
            self.session.mailbox.wake();
        }
        let now = StdInstant::now();
        let mut sent = 0u64;
        let mut dropped = 0u64;
        let observed = self.broker.hooks.wants().deliveries;
        for delivery in batch {
            if delivery.message.is_expired(now) {
                dropped += 1;
                if observed {
                    let client_id = Some(&**self.session.client_id());
                    self.broker.dropped(client_id, &delivery.message, DropReason::Expired);
                }
                continue;
            }
            let packet_id = match delivery.qos {
                QoS::AtMostOnce => None,
                _ => match self.session.allocate_packet_id() {
                    Some(id) => Some(id),
                    None => {
                        dropped += 1;
                        continue;
                    }
                },
            };
            if self.write_publish(&delivery, packet_id, false, now) {
                sent += 1;
                if observed {
                    let (broker, client_id) = (&self.broker, &**self.session.client_id());
                    broker
                        .hooks
                        .each(|i| i.deliveries, |hook| hook.message_delivered(client_id, &delivery.message));
                }
                if let Some(id) = packet_id {
                    self.session.track(id, delivery);
                }
            } else {
                dropped += 1;
            }
        }
        if sent > 0 {
            self.last_active = tokio::time::Instant::from_std(now);
        }
        Metrics::add(&self.broker.metrics.messages_sent, sent);
        Metrics::add(&self.broker.metrics.messages_dropped, dropped);
        Ok(())
    }

    /// Resends, in their original order, the messages a resumed session had
    /// not had acknowledged: PUBLISH with DUP, or PUBREL once PUBREC came.
    pub(super) fn resend_inflight(&mut self) -> Result<(), Close> {
        let now = StdInstant::now();
        for (packet_id, entry) in self.session.inflight_in_order() {
            match entry.state {
                OutgoingState::Published => {
                    if !self.write_publish(&entry.delivery, Some(packet_id), true, now) {
                        self.session.inflight.remove(&packet_id);
                    }
                }
                OutgoingState::Released => {
                    let rel = PubAck {
                        packet_id,
                        reason: ReasonCode::SUCCESS,
                        properties: AckProperties::default(),
                    };
                    self.send(&Packet::PubRel(rel));
                }
            }
        }
        Ok(())
    }

    /// Encodes one PUBLISH; false if it could not go out (too large for the client).
    /// The message's topic, properties and payload are borrowed, not cloned:
    /// only a 5.0 client gets a copy of the properties, to carry its own
    /// subscription ids, remaining expiry and topic alias.
    fn write_publish(
        &mut self,
        delivery: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
        now: StdInstant,
    ) -> bool {
        let message = &delivery.message;
        let mut properties = None;
        let mut topic = message.topic.as_str();
        let mut new_alias = None;
        if self.version.is_v5() {
            let mut own = message.properties.clone();
            own.subscription_identifiers = delivery.subscription_ids.clone();
            own.message_expiry_interval = message.remaining_expiry(now);
            if self.limits.topic_alias_maximum > 0 {
                let maximum = self.limits.topic_alias_maximum as usize;
                let aliases = &mut self.extras_mut().outgoing;
                if let Some(alias) = aliases.get(topic) {
                    own.topic_alias = Some(*alias);
                    topic = "";
                } else if aliases.len() < maximum {
                    let alias = aliases.len() as u16 + 1;
                    aliases.insert(message.topic.clone(), alias);
                    own.topic_alias = Some(alias);
                    new_alias = Some(alias);
                }
            }
            properties = Some(own);
        }
        let publish = PublishRef {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic,
            packet_id,
            properties: properties.as_ref(),
            payload: &message.payload,
        };
        let start = self.write_buf.len();
        let fits = mqtt_codec::encode_publish_ref(&publish, self.version, &mut self.write_buf).is_ok()
            && self.write_buf.len() - start <= self.limits.max_packet_size as usize;
        if !fits {
            self.write_buf.truncate(start);
            if let Some(alias) = new_alias {
                // The alias was never announced: forget it.
                self.extras_mut().outgoing.retain(|_, a| *a != alias);
            }
        }
        fits
    }
}
