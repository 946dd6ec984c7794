//! Packets from the client after CONNECT: PUBLISH and its acknowledgements,
//! SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT.
//!
//! Invariants: an incoming QoS 2 message is checked when its PUBLISH first
//! arrives, held in the session under its packet id, and routed once, at
//! its PUBREL (as Mosquitto does; the specification allows either, and
//! clients subscribed to their own topic rely on getting it after PUBCOMP);
//! a resent PUBLISH (DUP) is acknowledged but not held again; more
//! unacknowledged QoS 2 messages than our Receive Maximum closes the
//! connection with 0x93.

use std::time::{Duration, Instant as StdInstant};

use mqtt_codec::{
    AckProperties, Packet, PubAck, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};
use tracing::debug;

use super::{Close, Connection};
use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::session::OutgoingState;
use crate::topic;
use crate::transport::Transport;

impl<T: Transport> Connection<T> {
    /// Decodes and handles the whole packets in the read buffer; stops early
    /// (leaving the rest buffered) when a publish met back-pressure.
    pub(super) fn handle_input(&mut self) -> Result<(), Close> {
        let max = self.broker.config.mqtt.max_packet_size as usize;
        loop {
            if !self.pressure.is_empty() {
                return Ok(());
            }
            match mqtt_codec::decode(&mut self.read_buf, self.version, max) {
                Ok(Some(packet)) => {
                    // A ping from an idle client does not keep it awake.
                    if !matches!(packet, Packet::PingReq) {
                        self.last_active = self.last_read;
                    }
                    self.handle_packet(packet)?
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    Metrics::add(&self.broker.metrics.packets_malformed, 1);
                    debug!(%error, "bad packet");
                    return Err(Close::Violation(error.reason_code()));
                }
            }
        }
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish),
            Packet::PubAck(ack) => {
                if matches!(self.session.inflight.get(&ack.packet_id), Some(e) if e.delivery.qos == QoS::AtLeastOnce)
                {
                    if let Some(entry) = self.session.inflight.remove(&ack.packet_id) {
                        self.acked(&entry.delivery.message);
                    }
                }
                Ok(())
            }
            Packet::PubRec(rec) => {
                let known = matches!(
                    self.session.inflight.get(&rec.packet_id),
                    Some(e) if e.delivery.qos == QoS::ExactlyOnce
                );
                if !known {
                    self.send_ack(Packet::PubRel, rec.packet_id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
                } else if !rec.reason.is_success() {
                    // The receiver refused it: the exchange ends here.
                    self.session.inflight.remove(&rec.packet_id);
                } else {
                    if let Some(entry) = self.session.inflight.get_mut(&rec.packet_id) {
                        entry.state = OutgoingState::Released;
                    }
                    self.send_ack(Packet::PubRel, rec.packet_id, ReasonCode::SUCCESS);
                }
                Ok(())
            }
            Packet::PubRel(rel) => {
                let (reason, wait) = match self.session.awaiting_rel.remove(&rel.packet_id) {
                    Some(message) => {
                        // Judged again as it is routed: a refusal now (the
                        // rules changed since PUBREC) drops it, and PUBCOMP
                        // has no reason code to say so.
                        let mailbox = self.session.mailbox.clone();
                        let published = self.broker.publish_as(
                            &self.session.identity,
                            message,
                            &mut self.pressure,
                            Some(&mailbox),
                        );
                        (ReasonCode::SUCCESS, published.ok().and_then(|p| p.ack))
                    }
                    None => (ReasonCode::PACKET_IDENTIFIER_NOT_FOUND, None),
                };
                // Sent once every other node with subscribers took it.
                self.ack_in_order(Packet::PubComp, rel.packet_id, reason, wait);
                Ok(())
            }
            Packet::PubComp(comp) => {
                if matches!(self.session.inflight.get(&comp.packet_id), Some(e) if e.state == OutgoingState::Released)
                {
                    if let Some(entry) = self.session.inflight.remove(&comp.packet_id) {
                        self.acked(&entry.delivery.message);
                    }
                }
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => {
                self.on_unsubscribe(unsubscribe);
                Ok(())
            }
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect.properties.session_expiry_interval {
                    // MQTT-3.14.2-2: a session that had no expiry cannot be given one now.
                    if self.session_expiry == 0 && expiry != 0 {
                        return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR));
                    }
                    self.session_expiry = expiry.min(self.broker.config.session.max_expiry_interval);
                }
                Err(Close::ClientDisconnect {
                    with_will: disconnect.reason == ReasonCode::DISCONNECT_WITH_WILL,
                })
            }
            Packet::Auth(auth) => self.on_auth(auth),
            // A second CONNECT, or a packet only a server sends.
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => Err(Close::Violation(ReasonCode::PROTOCOL_ERROR)),
        }
    }

    /// Tells the delivery observers that the client acknowledged a message.
    fn acked(&self, message: &crate::message::Message) {
        if self.broker.hooks.wants().deliveries {
            let client_id = &**self.session.client_id();
            self.broker.hooks.each(|i| i.deliveries, |hook| hook.message_acked(client_id, message));
        }
    }

    fn send_ack(&mut self, kind: fn(PubAck) -> Packet, packet_id: u16, reason: ReasonCode) {
        let packet = kind(PubAck { packet_id, reason, properties: AckProperties::default() });
        self.send(&packet);
    }

    /// Acknowledges a client's message (PUBACK, PUBREC, PUBCOMP) in the
    /// order its packets came, once `wait` (the other nodes the message
    /// went to) has settled.
    pub(super) fn ack_in_order(
        &mut self,
        kind: fn(PubAck) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
        wait: Option<std::sync::Arc<crate::cluster::peer::ack::RemoteAck>>,
    ) {
        if self.acks.is_empty() && wait.as_ref().is_none_or(|w| w.is_done() && !w.was_refused()) {
            return self.send_ack(kind, packet_id, reason);
        }
        let what = super::AckPacket::Publish { kind, packet_id, reason };
        self.acks.push_back(super::PendingAck { what, wait });
    }

    /// Sends a SUBACK (then the retained messages for its subscriptions)
    /// in order with the other acknowledgements, once `wait` (the other
    /// nodes a new route was announced to) has settled.
    fn suback_in_order(
        &mut self,
        ack: SubAck,
        retained: Vec<Delivery>,
        wait: Option<std::sync::Arc<crate::cluster::peer::ack::RemoteAck>>,
    ) {
        if self.acks.is_empty() && wait.as_ref().is_none_or(|w| w.is_done()) {
            return self.send_suback(ack, retained);
        }
        self.acks.push_back(super::PendingAck { what: super::AckPacket::Subscribe { ack, retained }, wait });
    }

    fn send_suback(&mut self, ack: SubAck, retained: Vec<Delivery>) {
        self.send(&Packet::SubAck(ack));
        for delivery in retained {
            self.broker.deliver(&self.session.mailbox, delivery);
        }
    }

    /// Sends the acknowledgements whose turn came. A message that could not
    /// be handed to another node (this node's buffer for it was full) is
    /// refused with 0x97 (quota exceeded) for an MQTT 5.0 client; a 3.1.1
    /// client, which has no way to hear it, is disconnected without its
    /// acknowledgement, so that it sends the message again.
    pub(super) fn release_acks(&mut self) -> Result<(), Close> {
        while let Some(front) = self.acks.front() {
            if front.wait.as_ref().is_some_and(|w| !w.is_done()) {
                break;
            }
            let Some(pending) = self.acks.pop_front() else { break };
            let (kind, packet_id, mut reason) = match pending.what {
                super::AckPacket::Publish { kind, packet_id, reason } => (kind, packet_id, reason),
                super::AckPacket::Subscribe { ack, retained } => {
                    self.send_suback(ack, retained);
                    continue;
                }
            };
            if pending.wait.as_ref().is_some_and(|w| w.was_refused()) {
                if !self.version.is_v5() {
                    return Err(Close::Network);
                }
                if reason.is_success() {
                    reason = ReasonCode::QUOTA_EXCEEDED;
                }
            }
            self.send_ack(kind, packet_id, reason);
        }
        if self.acks.is_empty() && self.acks.capacity() > 64 {
            self.acks = Default::default();
        }
        Ok(())
    }

    fn on_publish(&mut self, mut publish: Publish) -> Result<(), Close> {
        let config = &self.broker.config.mqtt;
        if publish.qos as u8 > config.max_qos {
            return Err(Close::Violation(ReasonCode::QOS_NOT_SUPPORTED));
        }
        if publish.retain && !config.retain_available {
            return Err(Close::Violation(ReasonCode::RETAIN_NOT_SUPPORTED));
        }
        // A new alias is stored only once the ACL allowed its topic.
        let mut new_alias = None;
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > config.topic_alias_maximum {
                return Err(Close::Violation(ReasonCode::TOPIC_ALIAS_INVALID));
            }
            if publish.topic.is_empty() {
                match self.extras.as_ref().and_then(|a| a.incoming.get(&alias)) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR)),
                }
            } else {
                new_alias = Some(alias);
            }
        } else if publish.topic.is_empty() {
            return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR));
        }

        let packet_id = publish.packet_id.unwrap_or(0);
        if publish.qos == QoS::ExactlyOnce && self.session.awaiting_rel.contains_key(&packet_id) {
            // A resend of a message we already hold (its topic was allowed).
            if let Some(alias) = new_alias {
                self.store_alias(alias, &publish.topic)?;
            }
            self.ack_in_order(Packet::PubRec, packet_id, ReasonCode::SUCCESS, None);
            return Ok(());
        }
        if publish.qos == QoS::ExactlyOnce
            && self.session.awaiting_rel.len() >= self.broker.config.mqtt.receive_maximum as usize
        {
            return Err(Close::Violation(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
        }

        let topic_for_alias = new_alias.map(|alias| (alias, publish.topic.clone()));
        let qos = publish.qos;
        let mut wait = None;
        let reason = match Self::message_from(publish, self.session.client_id()) {
            Err(reason) => reason,
            Ok(message) if qos == QoS::ExactlyOnce => {
                match self.broker.authorize_publish(
                    &self.session.identity,
                    &message.topic,
                    message.qos,
                    message.retain,
                ) {
                    Ok(()) => {
                        self.session.awaiting_rel.insert(packet_id, message);
                        ReasonCode::SUCCESS
                    }
                    Err(reason) => {
                        self.broker.dropped(None, &message, crate::hooks::DropReason::NotAuthorized);
                        reason
                    }
                }
            }
            Ok(message) => {
                let (reason, remote) = self.route_publish(message);
                wait = remote;
                reason
            }
        };
        if reason == ReasonCode::NOT_AUTHORIZED && self.disconnects_on_deny() {
            return Err(Close::Revoked(ReasonCode::NOT_AUTHORIZED));
        }
        if let Some((alias, topic)) = topic_for_alias {
            let refused = matches!(reason, ReasonCode::NOT_AUTHORIZED | ReasonCode::TOPIC_NAME_INVALID);
            if !refused {
                self.store_alias(alias, &topic)?;
            }
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.ack_in_order(Packet::PubAck, packet_id, reason, wait),
            QoS::ExactlyOnce => self.ack_in_order(Packet::PubRec, packet_id, reason, None),
        }
        Ok(())
    }

    /// Sets an incoming topic alias, within the connection's byte budget
    /// for alias topics (0x97, quota exceeded, past it).
    fn store_alias(&mut self, alias: u16, topic: &str) -> Result<(), Close> {
        let budget = self.broker.config.mqtt.max_topic_alias_bytes;
        let aliases = self.extras_mut();
        let replaced = aliases.incoming.get(&alias).map_or(0, String::len);
        let held = aliases.incoming_bytes - replaced + topic.len();
        if held > budget {
            return Err(Close::Violation(ReasonCode::QUOTA_EXCEEDED));
        }
        aliases.incoming_bytes = held;
        aliases.incoming.insert(alias, topic.to_string());
        Ok(())
    }

    /// The broker's message for a client's PUBLISH (0x99 if it claims a
    /// UTF-8 payload that is not).
    fn message_from(publish: Publish, client_id: &std::sync::Arc<str>) -> Result<Message, ReasonCode> {
        if publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            return Err(ReasonCode::PAYLOAD_FORMAT_INVALID);
        }
        let mut properties = publish.properties;
        properties.subscription_identifiers.clear();
        let expires_at =
            properties.message_expiry_interval.map(|s| StdInstant::now() + Duration::from_secs(s as u64));
        Ok(Message {
            id: crate::message::next_id(),
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            publisher: Some(client_id.clone()),
            expires_at,
        })
    }

    /// Routes a client's message through the door; returns the reason
    /// code for its acknowledgement, and what it waits for on other nodes.
    fn route_publish(
        &mut self,
        message: Message,
    ) -> (ReasonCode, Option<std::sync::Arc<crate::cluster::peer::ack::RemoteAck>>) {
        let publisher = (message.qos != QoS::AtMostOnce).then(|| self.session.mailbox.clone());
        match self.broker.publish_as(&self.session.identity, message, &mut self.pressure, publisher.as_ref())
        {
            Err(reason) => (reason, None),
            Ok(p) if p.local + p.remote == 0 && self.version.is_v5() => {
                (ReasonCode::NO_MATCHING_SUBSCRIBERS, None)
            }
            Ok(p) => (ReasonCode::SUCCESS, p.ack),
        }
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Close> {
        let config = &self.broker.config.mqtt;
        let identifier = subscribe.properties.subscription_identifier;
        if identifier.is_some() && !config.subscription_identifiers_available {
            return Err(Close::Violation(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED));
        }
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained_to_send = Vec::new();
        let mut announced = false;
        for (raw, options) in subscribe.filters {
            if options.no_local && self.version.is_v5() && topic::is_shared(&raw) {
                // MQTT-3.8.3-4.
                return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR));
            }
            let subscribed = match self.broker.subscribe_as(&mut self.session, &raw, options, identifier) {
                Ok(subscribed) => subscribed,
                Err(ReasonCode::NOT_AUTHORIZED) if self.disconnects_on_deny() => {
                    return Err(Close::Revoked(ReasonCode::NOT_AUTHORIZED));
                }
                Err(reason) => {
                    reasons.push(reason);
                    continue;
                }
            };
            reasons.push(ReasonCode(subscribed.qos as u8));
            announced |= subscribed.announced;
            let send_retained = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !subscribed.existed,
                RetainHandling::DoNotSend => false,
            };
            if send_retained && !subscribed.shared {
                for message in self.broker.retained_for(&raw) {
                    if options.no_local && message.publisher.as_deref() == Some(&**self.session.client_id()) {
                        continue;
                    }
                    retained_to_send.push(Delivery {
                        qos: subscribed.qos.min(message.qos),
                        retain: true,
                        subscription_ids: identifier.into_iter().collect(),
                        share: None,
                        message,
                    });
                }
            }
        }
        let ack = SubAck { packet_id: subscribe.packet_id, reasons, properties: AckProperties::default() };
        // A new route: the other nodes hear of it before the client does.
        // (Also when an announcement is still out: it may be this route's,
        // made for another subscriber a moment ago.)
        let wait = if announced || self.broker.announcing() {
            self.broker.announced_barrier(&self.session.mailbox)
        } else {
            None
        };
        self.suback_in_order(ack, retained_to_send, wait);
        Ok(())
    }

    /// Checks this client's access again after users, bans or rules
    /// changed: ends the connection if it would no longer be let in, and
    /// drops the subscriptions the rules now deny.
    /// `auth.deny_action = disconnect`: a refused publish or subscription
    /// closes the connection.
    fn disconnects_on_deny(&self) -> bool {
        self.broker.config.auth.deny_action == crate::config::DenyAction::Disconnect
    }

    pub(super) fn revalidate(&mut self) -> Result<(), Close> {
        if let Err(reason) = self.broker.access.recheck(&mut self.session.identity) {
            debug!(?reason, "access withdrawn");
            return Err(Close::Revoked(reason));
        }
        let dropped = self.broker.enforce_subscriptions(&mut self.session);
        if dropped > 0 {
            debug!(dropped, "subscriptions denied by new rules");
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for raw in &unsubscribe.filters {
            let reason = match self.broker.unsubscribe_as(&mut self.session, raw) {
                Err(reason) => reason,
                Ok(true) => ReasonCode::SUCCESS,
                Ok(false) => ReasonCode::NO_SUBSCRIPTION_EXISTED,
            };
            reasons.push(reason);
        }
        let ack =
            UnsubAck { packet_id: unsubscribe.packet_id, reasons, properties: AckProperties::default() };
        self.send(&Packet::UnsubAck(ack));
    }
}
