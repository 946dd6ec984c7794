//! The first exchange: CONNECT in, checks, session claim (or takeover),
//! CONNACK out.
//!
//! Invariants: nothing but CONNECT is accepted as the first packet; a
//! refused client gets a CONNACK with the reason (in its own protocol
//! version's form) and no session is touched; a takeover completes before
//! CONNACK, so the old connection has sent DISCONNECT 0x8E and handed its
//! session over by the time the new client hears back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{ConnAck, ConnAckProperties, Connect, DecodeError, Packet, ProtocolVersion, ReasonCode};
use tokio::time::Instant;
use tracing::debug;

use super::{ClientLimits, Connection};
use crate::broker::Broker;
use crate::cluster::access::Identity;
use crate::door::Opened;
use crate::hooks::{ClientEvent, ConnectRequest};
use crate::message::{Message, Will};
use crate::metrics::Metrics;
use crate::transport::Transport;

/// Reads CONNECT and answers it. Returns the connection on success.
pub(super) async fn accept<T: Transport>(
    broker: Arc<Broker>,
    mut transport: T,
    peer: SocketAddr,
    listener: u8,
) -> Option<Box<Connection<T>>> {
    let timeout = Duration::from_secs(broker.config.mqtt.connect_timeout);
    // Room for a typical CONNECT and what follows it, not a full read
    // chunk: connection storms would hold one per handshake in progress.
    let mut read_buf = BytesMut::with_capacity(1024);
    let max_packet = broker.config.mqtt.max_packet_size as usize;
    let read = tokio::time::timeout(timeout, read_connect(&mut transport, &mut read_buf, max_packet));
    let connect = match read.await {
        Err(_) => {
            debug!("no CONNECT in time");
            return None;
        }
        Ok(Err(refusal)) => {
            Metrics::add(&broker.metrics.packets_malformed, 1);
            debug!(?refusal, "bad first packet");
            if let Some((version, reason)) = refusal {
                let ack = ConnAck { session_present: false, reason, properties: Default::default() };
                let mut out = BytesMut::new();
                let _ = mqtt_codec::encode(&Packet::ConnAck(ack), version, &mut out);
                let _ = transport.write_all(&out).await;
            }
            transport.close().await;
            return None;
        }
        Ok(Ok(connect)) => connect,
    };
    let version = connect.protocol;
    let mut connack_props = ConnAckProperties::default();
    let config = &broker.config;

    let refuse = |reason: ReasonCode| (version, reason);
    let checked = check_connect(&broker, &connect).map_err(refuse);
    let (client_id, assigned) = match checked {
        Ok(ids) => ids,
        Err((version, reason)) => {
            refuse_connection(&mut transport, version, reason).await;
            return None;
        }
    };
    tracing::Span::current().record("client_id", &*client_id);
    let scram = match super::enhanced_auth::wants_scram(&broker, &connect, listener) {
        Ok(scram) => scram,
        Err(reason) => {
            refuse_connection(&mut transport, version, reason).await;
            return None;
        }
    };

    // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d; rules
    // and bans name them as IPv4.
    // Copied out: the transport is needed again to answer.
    let certificate = transport.peer_certificate().map(<[u8]>::to_vec);
    let request = ConnectRequest {
        client_id: &client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
        address: peer.ip().to_canonical(),
        certificate: certificate.as_deref(),
    };
    let generation = broker.access_generation();
    let authenticated = if scram {
        super::enhanced_auth::connect_exchange(&broker, &mut transport, &mut read_buf, &connect, request)
            .await
            .map(|(identity, server_final)| {
                connack_props.authentication_method = Some(crate::auth::scram::METHOD.to_owned());
                connack_props.authentication_data = Some(server_final.into());
                identity
            })
    } else {
        broker.authenticate_client(request, listener).await
    };
    let identity = match authenticated {
        Ok(identity) => identity,
        Err(reason) => {
            refuse_connection(&mut transport, version, reason).await;
            return None;
        }
    };
    // The authenticator may have named the client (x509 `clientid`): 5.0
    // clients are told, as of an id the server assigns.
    let (client_id, assigned) = if identity.client_id != client_id {
        if identity.client_id.len() > config.mqtt.max_clientid_len {
            refuse_connection(&mut transport, version, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID).await;
            return None;
        }
        tracing::Span::current().record("client_id", &*identity.client_id);
        (identity.client_id.clone(), true)
    } else {
        (client_id, assigned)
    };

    let will = match build_will(&broker, &connect, &identity) {
        Ok(will) => will,
        Err(reason) => {
            refuse_connection(&mut transport, version, reason).await;
            return None;
        }
    };

    // Session expiry: 5.0 asks; 3.1.1 persistent sessions get the configured maximum.
    let requested_expiry = if version.is_v5() {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    };
    let session_expiry = requested_expiry.min(config.session.max_expiry_interval);
    if version.is_v5() && session_expiry != requested_expiry {
        connack_props.session_expiry_interval = Some(session_expiry);
    }

    // Open the session, taking it over from a live connection if need be.
    let connection_id = broker.next_id();
    let control = Arc::new(crate::registry::ControlSlot::default());
    let Opened { session, present: session_present } = match broker
        .open_session(identity, connect.clean_start, session_expiry, generation, connection_id, &control)
        .await
    {
        Ok(opened) => opened,
        Err(reason) => {
            refuse_connection(&mut transport, version, reason).await;
            return None;
        }
    };

    let keep_alive = server_keep_alive(connect.keep_alive, config.mqtt.max_keep_alive);
    if version.is_v5() {
        if keep_alive != connect.keep_alive {
            connack_props.server_keep_alive = Some(keep_alive);
        }
        connack_props.receive_maximum = Some(config.mqtt.receive_maximum);
        connack_props.maximum_packet_size = Some(config.mqtt.max_packet_size);
        connack_props.topic_alias_maximum = Some(config.mqtt.topic_alias_maximum);
        if config.mqtt.max_qos < 2 {
            connack_props.maximum_qos = Some(config.mqtt.max_qos);
        }
        connack_props.retain_available = Some(config.mqtt.retain_available);
        connack_props.wildcard_subscription_available = Some(config.mqtt.wildcard_subscription_available);
        connack_props.shared_subscription_available = Some(config.mqtt.shared_subscription_available);
        connack_props.subscription_identifiers_available =
            Some(config.mqtt.subscription_identifiers_available);
        if assigned {
            connack_props.assigned_client_identifier = Some(client_id.to_string());
        }
    }
    let limits = ClientLimits {
        window: connect.properties.receive_maximum.unwrap_or(u16::MAX).min(config.mqtt.max_inflight),
        max_packet_size: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
        topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
    };

    let mut connection = Box::new(Connection {
        broker,
        transport,
        id: connection_id,
        listener,
        version,
        read_buf,
        write_buf: BytesMut::new(),
        session,
        keep_alive,
        last_read: Instant::now(),
        last_active: Instant::now(),
        limits,
        session_expiry,
        will,
        pressure: Vec::new(),
        acks: Default::default(),
        extras: None,
        control,
    });
    if scram {
        connection.enable_reauth();
    }
    if let Some(acl) = &connection.session.identity.acl {
        acl.attach(&connection.control);
    }
    if let Some(at) = connection.session.identity.acl.as_ref().and_then(|acl| acl.expires_at) {
        // The credential expires (a JWT's `exp`): the connection checks its
        // access then, and goes (the slot is held weakly: a connection that
        // ended first is not kept).
        let slot = Arc::downgrade(&connection.control);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            if let Some(slot) = slot.upgrade() {
                slot.revalidate();
            }
        });
    }
    if connection.broker.is_shutting_down() {
        // Shutdown began while this client was connecting: it missed the
        // broadcast, so it gets the news now.
        connection.control.send(crate::registry::Control::Shutdown);
    }
    let ack = ConnAck { session_present, reason: ReasonCode::SUCCESS, properties: connack_props };
    connection.send(&Packet::ConnAck(ack));
    connection.broker.client_connected(ClientEvent {
        identity: &connection.session.identity,
        protocol: "mqtt",
        protocol_version: version.level(),
        keep_alive,
        clean_start: connect.clean_start,
    });
    debug!(?version, session_present, "connected");
    Some(connection)
}

/// Reads bytes until a whole first packet is there and decodes it as CONNECT.
/// On failure, says which CONNACK to send, if any.
async fn read_connect<T: Transport>(
    transport: &mut T,
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Box<Connect>, Option<(ProtocolVersion, ReasonCode)>> {
    loop {
        if let Some(&first) = buf.first() {
            if first >> 4 != 1 {
                return Err(None);
            }
            // Read before decoding: a failed decode consumes the packet.
            let level = connect_level(buf);
            match mqtt_codec::decode(buf, ProtocolVersion::V311, max_packet) {
                Ok(Some(Packet::Connect(connect))) => return Ok(connect),
                Ok(Some(_)) => return Err(None),
                Ok(None) => {}
                Err(DecodeError::UnsupportedProtocol { name, .. }) => {
                    // MQTT-3.1.2-2: an unsupported level of "MQTT" gets return code 1.
                    let known_name = name == "MQTT" || name == "MQIsdp";
                    return Err(known_name
                        .then_some((ProtocolVersion::V311, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)));
                }
                Err(error) => {
                    let v5 = level == Some(5);
                    return Err(v5.then(|| (ProtocolVersion::V5, error.reason_code())));
                }
            }
        }
        match transport.read(buf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

/// The protocol level byte of a buffered CONNECT, if it can be found.
fn connect_level(buf: &[u8]) -> Option<u8> {
    let mut index = 1;
    while *buf.get(index)? & 0x80 != 0 {
        index += 1;
        if index > 4 {
            return None;
        }
    }
    index += 1;
    let name_len = u16::from_be_bytes([*buf.get(index)?, *buf.get(index + 1)?]) as usize;
    buf.get(index + 2 + name_len).copied()
}

/// Checks the client identifier. Returns it and whether we assigned it.
fn check_connect(broker: &Broker, connect: &Connect) -> Result<(Arc<str>, bool), ReasonCode> {
    let config = &broker.config;
    let version = connect.protocol;
    let (client_id, assigned) = if connect.client_id.is_empty() {
        // 3.1 requires an identifier; 3.1.1 allows none only with Clean Session.
        if version == ProtocolVersion::V31 || (version == ProtocolVersion::V311 && !connect.clean_start) {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        (Arc::<str>::from(format!("mqttd-{:016x}", rand::random::<u64>())), true)
    } else {
        (Arc::from(connect.client_id.as_str()), false)
    };
    if client_id.len() > config.mqtt.max_clientid_len {
        return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    }
    Ok((client_id, assigned))
}

/// Validates and authorizes the will (as a publish of this client's), and
/// builds its message.
fn build_will(
    broker: &Broker,
    connect: &Connect,
    identity: &Identity,
) -> Result<Option<Box<Will>>, ReasonCode> {
    let Some(will) = &connect.will else { return Ok(None) };
    if will.topic.is_empty() || crate::topic::has_wildcard(&will.topic) {
        return Err(ReasonCode::TOPIC_NAME_INVALID);
    }
    broker.authorize_publish(identity, &will.topic, will.qos, will.retain)?;
    if will.qos as u8 > broker.config.mqtt.max_qos {
        return Err(ReasonCode::QOS_NOT_SUPPORTED);
    }
    if will.retain && !broker.config.mqtt.retain_available {
        return Err(ReasonCode::RETAIN_NOT_SUPPORTED);
    }
    let props = &will.properties;
    let publish_props = mqtt_codec::PublishProperties {
        payload_format_indicator: props.payload_format_indicator,
        message_expiry_interval: props.message_expiry_interval,
        response_topic: props.response_topic.clone(),
        correlation_data: props.correlation_data.clone(),
        user_properties: props.user_properties.clone(),
        content_type: props.content_type.clone(),
        ..Default::default()
    };
    if props.payload_format_indicator == Some(1) && std::str::from_utf8(&will.payload).is_err() {
        return Err(ReasonCode::PAYLOAD_FORMAT_INVALID);
    }
    let message = Message {
        id: crate::message::next_id(),
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        expires_at: None,
        properties: publish_props,
        publisher: Some(identity.client_id.clone()),
    };
    let delay = props.will_delay_interval.unwrap_or(0);
    Ok(Some(Box::new(Will { message: Arc::new(message), delay, identity: identity.clone() })))
}

/// The keep-alive to enforce: the client's, unless it exceeds the maximum.
fn server_keep_alive(requested: u16, maximum: u16) -> u16 {
    if maximum > 0 && (requested == 0 || requested > maximum) {
        maximum
    } else {
        requested
    }
}

async fn refuse_connection<T: Transport>(transport: &mut T, version: ProtocolVersion, reason: ReasonCode) {
    debug!(?reason, "connection refused");
    let ack = ConnAck { session_present: false, reason, properties: Default::default() };
    let mut out = BytesMut::new();
    if mqtt_codec::encode(&Packet::ConnAck(ack), version, &mut out).is_ok() {
        let _ = transport.write_all(&out).await;
    }
    transport.close().await;
}
