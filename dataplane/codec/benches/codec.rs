//! Criterion micro-benchmarks of the codec: `decode` and `encode` of each
//! packet a broker handles on its hot paths, for MQTT 3.1.1 and 5.0.
//!
//! Every case is a fixed, realistic packet (a sensor's CONNECT, a PUBLISH of
//! 64 bytes or 1 KiB, a SUBSCRIBE of 10 filters, ...), built once and checked
//! to round-trip before it is measured, so a codec change that breaks a case
//! fails the bench instead of timing an error path. Throughput is reported in
//! bytes of the encoded packet, fixed header included.
//!
//! Decode is timed on a fresh read buffer holding exactly one packet (the
//! buffer's copy is made outside the timed section), as the connection task
//! does after a read; encode appends to a write buffer that is cleared, not
//! reallocated, between iterations, as the connection task reuses its own.

#![forbid(unsafe_code)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mqtt_codec::{
    decode, encode, encoded_len, AckProperties, Connect, ConnectProperties, Disconnect, DisconnectProperties,
    Packet, ProtocolVersion, PubAck, Publish, PublishProperties, QoS, ReasonCode, SubAck, Subscribe,
    SubscribeProperties, SubscriptionOptions, MAX_REMAINING_LENGTH,
};

/// No case comes near it: the limit only has to let every case through.
const MAX_PACKET_SIZE: usize = MAX_REMAINING_LENGTH + 5;

/// One packet to measure, under the name its benchmark id carries.
struct Case {
    name: String,
    version: ProtocolVersion,
    packet: Packet,
}

impl Case {
    fn new(name: impl Into<String>, version: ProtocolVersion, packet: Packet) -> Case {
        Case { name: name.into(), version, packet }
    }
}

fn version_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V31 => "v3.1",
        ProtocolVersion::V311 => "v3.1.1",
        ProtocolVersion::V5 => "v5",
    }
}

fn connect(version: ProtocolVersion) -> Packet {
    let properties = if version.is_v5() {
        ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(100),
            maximum_packet_size: Some(1 << 20),
            topic_alias_maximum: Some(16),
            user_properties: vec![("fleet".into(), "eu-west".into())],
            ..ConnectProperties::default()
        }
    } else {
        ConnectProperties::default()
    };
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: "fleet-s0042-d000123".into(),
        will: None,
        username: Some("device-000123".into()),
        password: Some(Bytes::from_static(b"correct horse battery staple")),
        properties,
    }))
}

fn publish(version: ProtocolVersion, qos: QoS, payload_len: usize) -> Packet {
    let properties = if version.is_v5() {
        PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(300),
            content_type: Some("application/json".into()),
            user_properties: vec![("trace".into(), "4bf92f3577b34da6".into())],
            ..PublishProperties::default()
        }
    } else {
        PublishProperties::default()
    };
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: "fleet/s0042/d000123/state".into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(4711),
        properties,
        payload: Bytes::from(vec![b'x'; payload_len]),
    })
}

fn puback() -> Packet {
    Packet::PubAck(PubAck {
        packet_id: 4711,
        reason: ReasonCode::SUCCESS,
        properties: AckProperties::default(),
    })
}

fn subscribe(version: ProtocolVersion) -> Packet {
    let options = SubscriptionOptions { qos: QoS::AtLeastOnce, ..SubscriptionOptions::default() };
    let filters = (0..10)
        .map(|i| {
            let filter = match i % 3 {
                0 => format!("fleet/s0042/d{:06}/state", 100 + i),
                1 => format!("fleet/s0042/+/alarm/{i}"),
                _ => format!("fleet/s{:04}/#", 40 + i),
            };
            (filter, options)
        })
        .collect();
    let properties = if version.is_v5() {
        SubscribeProperties { subscription_identifier: Some(7), user_properties: Vec::new() }
    } else {
        SubscribeProperties::default()
    };
    Packet::Subscribe(Subscribe { packet_id: 17, filters, properties })
}

fn suback() -> Packet {
    Packet::SubAck(SubAck {
        packet_id: 17,
        reasons: vec![ReasonCode::GRANTED_QOS_1; 10],
        properties: AckProperties::default(),
    })
}

fn disconnect(version: ProtocolVersion) -> Packet {
    let properties = if version.is_v5() {
        DisconnectProperties { session_expiry_interval: Some(0), ..DisconnectProperties::default() }
    } else {
        DisconnectProperties::default()
    };
    Packet::Disconnect(Disconnect { reason: ReasonCode::NORMAL_DISCONNECTION, properties })
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let v = version_name(version);
        cases.push(Case::new(format!("connect/{v}"), version, connect(version)));
        for (qos, qos_name) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
            for (payload_len, size_name) in [(64, "64B"), (1024, "1KiB")] {
                cases.push(Case::new(
                    format!("publish_{qos_name}_{size_name}/{v}"),
                    version,
                    publish(version, qos, payload_len),
                ));
            }
        }
        cases.push(Case::new(format!("puback/{v}"), version, puback()));
        cases.push(Case::new(format!("subscribe_10/{v}"), version, subscribe(version)));
        cases.push(Case::new(format!("suback_10/{v}"), version, suback()));
        cases.push(Case::new(format!("pingreq/{v}"), version, Packet::PingReq));
        cases.push(Case::new(format!("disconnect/{v}"), version, disconnect(version)));
    }
    cases
}

/// Encodes `case` and checks that it decodes back to the same packet.
fn encoded(case: &Case) -> Bytes {
    let mut buf = BytesMut::new();
    encode(&case.packet, case.version, &mut buf).unwrap_or_else(|e| panic!("{}: encode: {e}", case.name));
    assert_eq!(buf.len(), encoded_len(&case.packet, case.version), "{}: encoded_len", case.name);
    let bytes = buf.clone().freeze();
    let decoded = decode(&mut buf, case.version, MAX_PACKET_SIZE)
        .unwrap_or_else(|e| panic!("{}: decode: {e}", case.name))
        .unwrap_or_else(|| panic!("{}: decode: incomplete", case.name));
    assert_eq!(decoded, case.packet, "{}: round trip", case.name);
    bytes
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for case in cases() {
        let bytes = encoded(&case);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&case.name), &bytes, |b, bytes| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| decode(black_box(buf), case.version, MAX_PACKET_SIZE),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for case in cases() {
        let len = encoded(&case).len();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&case.name), &case.packet, |b, packet| {
            let mut buf = BytesMut::with_capacity(len);
            b.iter(|| {
                buf.clear();
                encode(black_box(packet), case.version, &mut buf)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
