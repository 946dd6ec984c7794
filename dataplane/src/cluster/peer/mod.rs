//! Peer links: data-plane nodes hand each other the messages their
//! subscribers want (`proto/peer.proto`, package `mqttd.peer.v1`).
//!
//! - `outbox`: one link per remote node, with a bounded buffer, batching,
//!   acknowledgements and reconnection; a message goes once to each node
//!   with a matching route, whatever its number of subscribers there.
//! - `server`: the `Peer` service on `dataplane.peer_bind`; delivers what
//!   other nodes send to this node's subscribers, at most once per batch.
//! - `ack`: what a publisher's PUBACK/PUBCOMP waits for.
//!
//! Invariants: a forwarded message is never forwarded again (the receiver
//! routes it to its own subscribers only, and never to `$local/` ones);
//! messages from one node reach another in the order they were published
//! (one stream, resent in order after a reconnection); every link presents
//! and checks the cluster's peer secret.

pub mod ack;
pub mod outbox;
pub mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_codec::{PublishProperties, QoS};
use proto::peer as pb;

use crate::message::Message;

/// Mutual TLS on peer links (`[dataplane.peer_tls]`): what this node
/// serves and presents, and the CA both sides' certificates come from.
#[derive(Debug, Clone)]
pub struct PeerTls {
    pub server: tonic::transport::ServerTlsConfig,
    pub client: proto::tls::ClientTls,
}

impl PeerTls {
    /// Serves `cert`/`key` (PEM), asks every client for a certificate from
    /// `ca`, and presents the same certificate to the nodes it reaches,
    /// trusting `ca` for theirs.
    pub fn from_pem(cert: Vec<u8>, key: Vec<u8>, ca: Vec<u8>) -> PeerTls {
        proto::tls::install_crypto_provider();
        let server = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&cert, &key))
            .client_ca_root(tonic::transport::Certificate::from_pem(&ca));
        let client = proto::tls::ClientTls::new(ca, Some((cert, key)));
        PeerTls { server, client }
    }
}

/// How peer links behave (`dataplane.peer_*` keys).
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// TLS on every peer link, both ways; `None`: plain TCP.
    pub tls: Option<PeerTls>,
    /// Messages buffered for one remote node before new ones are dropped
    /// (QoS 0) or refused (QoS 1 and 2).
    pub queue_messages: usize,
    /// The longest a publisher's acknowledgement waits for a node that
    /// neither answers nor is declared down.
    pub ack_timeout: Duration,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings { tls: None, queue_messages: 100_000, ack_timeout: Duration::from_secs(30) }
    }
}

/// A client of another node's `Peer` service.
pub type Client = pb::peer_client::PeerClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, proto::auth::BearerToken>,
>;

/// The endpoint of the node at `address` (`HOST:PORT`): `https://` with
/// `tls`, else `http://`.
pub fn endpoint(address: &str, tls: Option<&PeerTls>) -> Option<tonic::transport::Endpoint> {
    let host = address.split_once("://").map_or(address, |(_, rest)| rest);
    match tls {
        Some(tls) => tls.client.endpoint(&format!("https://{host}")).ok(),
        None => tonic::transport::Endpoint::from_shared(format!("http://{host}")).ok(),
    }
}

/// A client for the node at `address` (connected on first use) presenting
/// `secret`; `None` for an address or secret that cannot be used.
pub fn client(
    address: &str,
    secret: &str,
    tls: Option<&PeerTls>,
    connect_timeout: Duration,
) -> Option<Client> {
    let channel = endpoint(address, tls)?.connect_timeout(connect_timeout).tcp_nodelay(true).connect_lazy();
    let token = proto::auth::BearerToken::new((!secret.is_empty()).then_some(secret)).ok()?;
    Some(
        pb::peer_client::PeerClient::with_interceptor(channel, token)
            .max_decoding_message_size(MAX_BATCH_BYTES)
            .max_encoding_message_size(MAX_BATCH_BYTES),
    )
}

/// What one remote node gets of a message: its plain subscriptions (when
/// it has a matching route), and the shared groups whose chosen member it
/// holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub node: u64,
    pub plain: bool,
    pub shares: Vec<pb::ShareMember>,
    /// The message was already redirected once (see `peer.proto`).
    pub redirected: bool,
    /// The node stores it as its topic's retained message, if newer.
    pub retained: Option<crate::retained::Version>,
}

impl Target {
    pub fn plain(node: u64) -> Target {
        Target { node, plain: true, ..Target::default() }
    }
}

/// Adds a shared group's chosen member on `node` to `targets`.
pub fn add_share(targets: &mut Vec<Target>, node: u64, member: pb::ShareMember) {
    match targets.iter_mut().find(|t| t.node == node) {
        Some(target) => target.shares.push(member),
        None => targets.push(Target { node, shares: vec![member], ..Target::default() }),
    }
}

/// Marks every node in `nodes` to store a retained change of `version`.
pub fn add_retained(
    targets: &mut Vec<Target>,
    nodes: impl IntoIterator<Item = u64>,
    version: crate::retained::Version,
) {
    for node in nodes {
        match targets.iter_mut().find(|t| t.node == node) {
            Some(target) => target.retained = Some(version),
            None => targets.push(Target { node, retained: Some(version), ..Target::default() }),
        }
    }
}

/// The wire form of a retained message's version.
pub fn version_to_wire(version: crate::retained::Version) -> pb::RetainVersion {
    pb::RetainVersion { micros: version.micros, node: version.node }
}

/// A retained message's version from the wire.
pub fn version_from_wire(version: &pb::RetainVersion) -> crate::retained::Version {
    crate::retained::Version { micros: version.micros, node: version.node }
}

/// Messages in one batch, at most.
pub const BATCH_MESSAGES: usize = 512;

/// Bytes of payload in one batch, about at most (one message may pass it).
pub const BATCH_BYTES: usize = 1024 * 1024;

/// The largest batch a node accepts (a batch of [`BATCH_MESSAGES`] with
/// the largest MQTT payloads fits only when few are large).
pub const MAX_BATCH_BYTES: usize = 300 * 1024 * 1024;

/// A message as it goes over a peer link.
pub fn to_wire(message: &Message, now: Instant) -> pb::PeerMessage {
    let p = &message.properties;
    pb::PeerMessage {
        id: message.id,
        topic: message.topic.clone(),
        payload: message.payload.clone(),
        qos: message.qos as u32,
        retain: message.retain,
        publisher: message.publisher.as_deref().unwrap_or_default().to_owned(),
        payload_format_indicator: p.payload_format_indicator.map(u32::from),
        message_expiry_interval: message.remaining_expiry(now),
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p
            .user_properties
            .iter()
            .map(|(key, value)| pb::UserProperty { key: key.clone(), value: value.clone() })
            .collect(),
        shares_only: false,
        shares: Vec::new(),
        redirected: false,
        retained: None,
    }
}

/// Why a forwarded message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("invalid topic name")]
    Topic,
    #[error("invalid QoS {0}")]
    Qos(u32),
    #[error("invalid payload format indicator")]
    PayloadFormat,
}

/// The broker's message for one that came over a peer link; its shape is
/// checked as a client's PUBLISH would be (the peer is trusted to have
/// authorized it, not to be well-formed).
pub fn from_wire(wire: pb::PeerMessage, now: Instant) -> Result<Message, WireError> {
    let topic = wire.topic;
    if topic.is_empty() || topic.len() > u16::MAX as usize || topic.contains(['+', '#', '\0']) {
        return Err(WireError::Topic);
    }
    let qos = u8::try_from(wire.qos).ok().and_then(QoS::from_u8).ok_or(WireError::Qos(wire.qos))?;
    let payload_format_indicator = match wire.payload_format_indicator {
        None => None,
        Some(value @ (0 | 1)) => Some(value as u8),
        Some(_) => return Err(WireError::PayloadFormat),
    };
    let properties = PublishProperties {
        payload_format_indicator,
        message_expiry_interval: wire.message_expiry_interval,
        response_topic: wire.response_topic,
        correlation_data: wire.correlation_data,
        user_properties: wire.user_properties.into_iter().map(|p| (p.key, p.value)).collect(),
        content_type: wire.content_type,
        ..PublishProperties::default()
    };
    let expires_at = wire.message_expiry_interval.map(|s| now + Duration::from_secs(u64::from(s)));
    let publisher = (!wire.publisher.is_empty()).then(|| Arc::<str>::from(wire.publisher));
    let id = if wire.id == 0 { crate::message::next_id() } else { wire.id };
    Ok(Message {
        id,
        topic,
        payload: wire.payload,
        qos,
        retain: wire.retain,
        properties,
        publisher,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_message_survives_the_wire_and_bad_shapes_are_refused() {
        let now = Instant::now();
        let message = Message {
            id: crate::message::next_id(),
            topic: "a/b".into(),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: PublishProperties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                response_topic: Some("r".into()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user_properties: vec![("k".into(), "v".into())],
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
            publisher: Some(Arc::from("pub")),
            expires_at: Some(now + Duration::from_secs(60)),
        };
        let back = from_wire(to_wire(&message, now), now).expect("valid");
        assert_eq!(back.topic, message.topic);
        assert_eq!(back.payload, message.payload);
        assert_eq!(back.qos, message.qos);
        assert_eq!(back.properties.user_properties, message.properties.user_properties);
        assert_eq!(back.properties.correlation_data, message.properties.correlation_data);
        assert_eq!(back.publisher.as_deref(), Some("pub"));
        assert_eq!(back.remaining_expiry(now), Some(60));
        for topic in ["", "a/+", "a/#", "a\0b"] {
            let wire = pb::PeerMessage { topic: topic.into(), ..to_wire(&message, now) };
            assert_eq!(from_wire(wire, now).err(), Some(WireError::Topic), "{topic:?}");
        }
        let wire = pb::PeerMessage { qos: 3, ..to_wire(&message, now) };
        assert_eq!(from_wire(wire, now).err(), Some(WireError::Qos(3)));
        let wire = pb::PeerMessage { payload_format_indicator: Some(7), ..to_wire(&message, now) };
        assert_eq!(from_wire(wire, now).err(), Some(WireError::PayloadFormat));
    }
}
