//! Bad input: every malformed packet or protocol violation closes that one
//! client (MQTT 5.0: after DISCONNECT with the spec's reason code) and the
//! broker keeps serving everyone else.

mod common;

use common::{raw_packet, Broker, Client, WAIT};
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

/// A v5 PUBLISH QoS 0 body: topic, property bytes, payload.
fn v5_publish_body(topic: &[u8], properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    body.push(properties.len() as u8);
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    body
}

fn v3_publish_body(topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    body.extend_from_slice(payload);
    body
}

/// Sends `bytes` from a freshly connected client and expects `reason`.
async fn expect_rejected(broker: &Broker, version: ProtocolVersion, bytes: &[u8], reason: ReasonCode) {
    let mut client = Client::connect(broker.port, version, "bad", true).await;
    client.send_bytes(bytes).await;
    client.expect_disconnect(reason).await;
}

#[tokio::test]
async fn malformed_packets_close_only_the_sender_with_the_right_reason() {
    let broker = Broker::start(&["mqtt.max_packet_size=1024", "mqtt.topic_alias_maximum=10"]);
    let mut bystander = Client::connect(broker.port, ProtocolVersion::V5, "bystander", true).await;
    bystander.subscribe("ok/#", QoS::AtLeastOnce).await;

    let v5 = ProtocolVersion::V5;
    let cases: Vec<(&str, Vec<u8>, ReasonCode)> = vec![
        ("QoS 3", raw_packet(0x36, &v5_publish_body(b"a", &[], b"x")), ReasonCode::MALFORMED_PACKET),
        (
            "wildcard in topic",
            raw_packet(0x30, &v5_publish_body(b"a/+", &[], b"x")),
            ReasonCode::TOPIC_NAME_INVALID,
        ),
        ("# in topic", raw_packet(0x30, &v5_publish_body(b"a/#", &[], b"x")), ReasonCode::TOPIC_NAME_INVALID),
        (
            "invalid UTF-8",
            raw_packet(0x30, &v5_publish_body(b"a/\xff", &[], b"x")),
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "U+0000 in topic",
            raw_packet(0x30, &v5_publish_body(b"a\0b", &[], b"x")),
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "empty topic, no alias",
            raw_packet(0x30, &v5_publish_body(b"", &[], b"x")),
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "duplicate property",
            raw_packet(0x30, &v5_publish_body(b"a", &[0x01, 0x00, 0x01, 0x00], b"x")),
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "topic alias above maximum",
            raw_packet(0x30, &v5_publish_body(b"a", &[0x23, 0x00, 0x0b], b"x")),
            ReasonCode::TOPIC_ALIAS_INVALID,
        ),
        (
            "unknown topic alias",
            raw_packet(0x30, &v5_publish_body(b"", &[0x23, 0x00, 0x05], b"x")),
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "reserved SUBSCRIBE flags",
            raw_packet(0x80, &[0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x00]),
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "remaining length over 4 bytes",
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "packet above maximum size",
            raw_packet(0x30, &v5_publish_body(b"ok/big", &[], &[0u8; 2000])),
            ReasonCode::PACKET_TOO_LARGE,
        ),
        (
            "second CONNECT",
            {
                let mut out = bytes::BytesMut::new();
                let connect = common::connect_packet(v5, "again", true);
                mqtt_codec::encode(&Packet::Connect(Box::new(connect)), v5, &mut out).unwrap();
                out.to_vec()
            },
            ReasonCode::PROTOCOL_ERROR,
        ),
        ("AUTH without a method", raw_packet(0xf0, &[]), ReasonCode::PROTOCOL_ERROR),
        ("reserved packet type 0", raw_packet(0x00, &[]), ReasonCode::MALFORMED_PACKET),
        ("PINGREQ with a body", raw_packet(0xc0, &[0]), ReasonCode::MALFORMED_PACKET),
    ];
    for (name, bytes, reason) in cases {
        eprintln!("case: {name}");
        expect_rejected(&broker, v5, &bytes, reason).await;
    }

    // The same kinds of packet from 3.1.1 clients: closed without a DISCONNECT.
    let v3 = ProtocolVersion::V311;
    for bytes in [
        raw_packet(0x36, &v3_publish_body(b"a", b"x")),
        raw_packet(0x30, &v3_publish_body(b"a/+", b"x")),
        raw_packet(0x30, &v3_publish_body(b"", b"x")),
        raw_packet(0x30, &v3_publish_body(b"a\0", b"x")),
        raw_packet(0x80, &[0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
        raw_packet(0x82, &[0x00, 0x01, 0x00, 0x01, b'a', 0x03]),
        raw_packet(0xf0, &[]),
    ] {
        let mut client = Client::connect(broker.port, v3, "bad3", true).await;
        client.send_bytes(&bytes).await;
        let seen = client.expect_close().await;
        assert!(seen.is_empty(), "3.1.1 client got {seen:?}");
    }

    // Everyone else was served throughout.
    let mut publisher = Client::connect(broker.port, ProtocolVersion::V311, "publisher", true).await;
    publisher.publish("ok/still", b"alive", QoS::AtLeastOnce, 1).await;
    let message = bystander.expect_publish().await;
    assert_eq!(&message.payload[..], b"alive");
}

#[tokio::test]
async fn first_packet_must_be_connect() {
    let broker = Broker::start(&[]);
    let mut client = Client::open(broker.port, ProtocolVersion::V311).await;
    client.send_bytes(&raw_packet(0xc0, &[])).await;
    assert!(client.expect_close().await.is_empty());
    let mut client = Client::open(broker.port, ProtocolVersion::V311).await;
    client.send_bytes(&raw_packet(0x30, &v3_publish_body(b"a", b"x"))).await;
    assert!(client.expect_close().await.is_empty());
}

#[tokio::test]
async fn unknown_protocol_name_is_closed_and_unknown_level_gets_return_code_1() {
    let broker = Broker::start(&[]);
    // Protocol name "MQTX": close without CONNACK (MQTT-3.1.2-1).
    let mut client = Client::open(broker.port, ProtocolVersion::V311).await;
    let body = [0, 4, b'M', b'Q', b'T', b'X', 4, 2, 0, 60, 0, 1, b'c'];
    client.send_bytes(&raw_packet(0x10, &body)).await;
    assert!(client.expect_close().await.is_empty());

    // Level 6: CONNACK with return code 1, then close (MQTT-3.1.2-2).
    let mut client = Client::open(broker.port, ProtocolVersion::V311).await;
    let body = [0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60, 0, 1, b'c'];
    client.send_bytes(&raw_packet(0x10, &body)).await;
    let seen = client.expect_close().await;
    assert!(
        matches!(seen.as_slice(), [Packet::ConnAck(ack)] if ack.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        "{seen:?}"
    );
}

#[tokio::test]
async fn malformed_v5_connect_gets_connack_with_reason() {
    let broker = Broker::start(&[]);
    let mut client = Client::open(broker.port, ProtocolVersion::V5).await;
    // Connect flags with the reserved bit set.
    let body = [0, 4, b'M', b'Q', b'T', b'T', 5, 0x03, 0, 60, 0, 0, 1, b'c'];
    client.send_bytes(&raw_packet(0x10, &body)).await;
    let seen = client.expect_close().await;
    assert!(
        matches!(seen.as_slice(), [Packet::ConnAck(ack)] if ack.reason == ReasonCode::MALFORMED_PACKET),
        "{seen:?}"
    );
}

#[tokio::test]
async fn silent_client_is_dropped_after_connect_timeout() {
    let broker = Broker::start(&["mqtt.connect_timeout=1"]);
    let mut client = Client::open(broker.port, ProtocolVersion::V311).await;
    let started = std::time::Instant::now();
    assert!(client.expect_close().await.is_empty());
    assert!(started.elapsed() < WAIT);
}
