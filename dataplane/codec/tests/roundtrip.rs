//! Property tests for the codec as a whole: every packet that a version can
//! carry round-trips through `encode` and `decode` unchanged, a packet cut at
//! any byte is reported as incomplete without touching the buffer, and no
//! input, random or a corrupted real packet, makes `decode` panic. Anything
//! that does decode re-encodes to the same packet (the fuzz target's check).

use bytes::{Bytes, BytesMut};
use mqtt_codec::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5];

// ---- strategies: only values valid for the version are generated ----

/// Any UTF-8 string without U+0000.
fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,10}"
}

/// A topic name: non-empty, no wildcards.
fn topic_name() -> impl Strategy<Value = String> {
    "[^\\x00+#]{1,12}"
}

/// A topic filter: non-empty; wildcard placement is not the codec's business.
fn topic_filter() -> impl Strategy<Value = String> {
    "[^\\x00]{1,12}"
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((text(), text()), 0..3)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn reason() -> impl Strategy<Value = ReasonCode> {
    any::<u8>().prop_map(ReasonCode)
}

fn subscription_identifier() -> impl Strategy<Value = u32> {
    1..=268_435_455u32
}

/// Authentication method and data; data only ever comes with a method.
fn authentication() -> impl Strategy<Value = (Option<String>, Option<Bytes>)> {
    of((text(), of(binary()))).prop_map(|auth| match auth {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    })
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(1..=u32::MAX),
        of(any::<u16>()),
        of(any::<bool>()),
        of(any::<bool>()),
        user_properties(),
        authentication(),
    )
        .prop_map(
            |(
                session_expiry_interval,
                receive_maximum,
                maximum_packet_size,
                topic_alias_maximum,
                request_response_information,
                request_problem_information,
                user_properties,
                (authentication_method, authentication_data),
            )| ConnectProperties {
                session_expiry_interval,
                receive_maximum,
                maximum_packet_size,
                topic_alias_maximum,
                request_response_information,
                request_problem_information,
                user_properties,
                authentication_method,
                authentication_data,
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        of(any::<u32>()),
        of(0..=1u8),
        of(any::<u32>()),
        of(text()),
        of(topic_name()),
        of(binary()),
        user_properties(),
    )
        .prop_map(
            |(
                will_delay_interval,
                payload_format_indicator,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            )| WillProperties {
                will_delay_interval,
                payload_format_indicator,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            },
        )
}

fn will(v5: bool) -> impl Strategy<Value = Will> {
    let properties = if v5 { will_properties().boxed() } else { Just(WillProperties::default()).boxed() };
    (topic_name(), binary(), qos(), any::<bool>(), properties).prop_map(
        |(topic, payload, qos, retain, properties)| Will { topic, payload, qos, retain, properties },
    )
}

fn connect(v5: bool) -> impl Strategy<Value = Packet> {
    let (protocol, properties) = if v5 {
        (Just(ProtocolVersion::V5).boxed(), connect_properties().boxed())
    } else {
        (
            prop_oneof![Just(ProtocolVersion::V31), Just(ProtocolVersion::V311)].boxed(),
            Just(ConnectProperties::default()).boxed(),
        )
    };
    (protocol, any::<bool>(), any::<u16>(), text(), of(will(v5)), of(text()), of(binary()), properties)
        .prop_map(
            move |(protocol, clean_start, keep_alive, client_id, will, username, password, properties)| {
                // Before 5.0 a password needs a user name.
                let username = match (&username, &password, v5) {
                    (None, Some(_), false) => Some(String::new()),
                    _ => username,
                };
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (of(any::<u32>()), of(1..=u16::MAX), of(0..=1u8), of(any::<bool>()), of(1..=u32::MAX), of(text())),
        (
            of(any::<u16>()),
            of(text()),
            user_properties(),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
        ),
        (of(any::<u16>()), of(text()), of(text()), authentication()),
    )
        .prop_map(
            |(
                (
                    session_expiry_interval,
                    receive_maximum,
                    maximum_qos,
                    retain_available,
                    maximum_packet_size,
                    assigned_client_identifier,
                ),
                (
                    topic_alias_maximum,
                    reason_string,
                    user_properties,
                    wildcard_subscription_available,
                    subscription_identifiers_available,
                    shared_subscription_available,
                ),
                (
                    server_keep_alive,
                    response_information,
                    server_reference,
                    (authentication_method, authentication_data),
                ),
            )| ConnAckProperties {
                session_expiry_interval,
                receive_maximum,
                maximum_qos,
                retain_available,
                maximum_packet_size,
                assigned_client_identifier,
                topic_alias_maximum,
                reason_string,
                user_properties,
                wildcard_subscription_available,
                subscription_identifiers_available,
                shared_subscription_available,
                server_keep_alive,
                response_information,
                server_reference,
                authentication_method,
                authentication_data,
            },
        )
}

fn connack(v5: bool) -> impl Strategy<Value = Packet> {
    let (reason, properties) = if v5 {
        (reason().boxed(), connack_properties().boxed())
    } else {
        // The reasons that 3.1.1 return codes 0..=5 map to.
        let v3_reasons = [0x00, 0x84, 0x85, 0x88, 0x86, 0x87].map(ReasonCode);
        (proptest::sample::select(v3_reasons.to_vec()).boxed(), Just(ConnAckProperties::default()).boxed())
    };
    (any::<bool>(), reason, properties).prop_map(|(session_present, reason, properties)| {
        Packet::ConnAck(ConnAck { session_present, reason, properties })
    })
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        of(0..=1u8),
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(topic_name()),
        of(binary()),
        user_properties(),
        vec(subscription_identifier(), 0..3),
        of(text()),
    )
        .prop_map(
            |(
                payload_format_indicator,
                message_expiry_interval,
                topic_alias,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            )| PublishProperties {
                payload_format_indicator,
                message_expiry_interval,
                topic_alias,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            },
        )
}

fn publish(v5: bool) -> impl Strategy<Value = Publish> {
    let (topic, properties) = if v5 {
        ("[^\\x00+#]{0,12}".boxed(), publish_properties().boxed())
    } else {
        (topic_name().boxed(), Just(PublishProperties::default()).boxed())
    };
    (qos(), any::<bool>(), any::<bool>(), topic, packet_id(), properties, vec(any::<u8>(), 0..64)).prop_map(
        |(qos, dup, retain, topic, packet_id, mut properties, payload)| {
            // An empty topic needs a topic alias (and only 5.0 has those).
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = Some(1);
            }
            let at_most_once = qos == QoS::AtMostOnce;
            Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: (!at_most_once).then_some(packet_id),
                properties,
                payload: Bytes::from(payload),
            }
        },
    )
}

fn ack_properties(v5: bool) -> BoxedStrategy<AckProperties> {
    if v5 {
        (of(text()), user_properties())
            .prop_map(|(reason_string, user_properties)| AckProperties { reason_string, user_properties })
            .boxed()
    } else {
        Just(AckProperties::default()).boxed()
    }
}

fn pub_ack(v5: bool) -> impl Strategy<Value = PubAck> {
    let reason = if v5 { reason().boxed() } else { Just(ReasonCode::SUCCESS).boxed() };
    (packet_id(), reason, ack_properties(v5)).prop_map(|(packet_id, reason, properties)| PubAck {
        packet_id,
        reason,
        properties,
    })
}

fn subscription_options(v5: bool) -> BoxedStrategy<SubscriptionOptions> {
    if v5 {
        let retain_handling = prop_oneof![
            Just(RetainHandling::SendAtSubscribe),
            Just(RetainHandling::SendIfNew),
            Just(RetainHandling::DoNotSend)
        ];
        (qos(), any::<bool>(), any::<bool>(), retain_handling)
            .prop_map(|(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            })
            .boxed()
    } else {
        qos().prop_map(|qos| SubscriptionOptions { qos, ..Default::default() }).boxed()
    }
}

fn subscribe(v5: bool) -> impl Strategy<Value = Packet> {
    let properties = if v5 {
        (of(subscription_identifier()), user_properties())
            .prop_map(|(subscription_identifier, user_properties)| SubscribeProperties {
                subscription_identifier,
                user_properties,
            })
            .boxed()
    } else {
        Just(SubscribeProperties::default()).boxed()
    };
    (packet_id(), vec((topic_filter(), subscription_options(v5)), 1..4), properties).prop_map(
        |(packet_id, filters, properties)| Packet::Subscribe(Subscribe { packet_id, filters, properties }),
    )
}

fn suback(v5: bool) -> impl Strategy<Value = Packet> {
    let reason = if v5 {
        reason().boxed()
    } else {
        proptest::sample::select(vec![0x00, 0x01, 0x02, 0x80]).prop_map(ReasonCode).boxed()
    };
    (packet_id(), vec(reason, 0..4), ack_properties(v5)).prop_map(|(packet_id, reasons, properties)| {
        Packet::SubAck(SubAck { packet_id, reasons, properties })
    })
}

fn unsubscribe(v5: bool) -> impl Strategy<Value = Packet> {
    let user_properties = if v5 { user_properties().boxed() } else { Just(Vec::new()).boxed() };
    (packet_id(), vec(topic_filter(), 1..4), user_properties).prop_map(
        |(packet_id, filters, user_properties)| {
            Packet::Unsubscribe(Unsubscribe { packet_id, filters, user_properties })
        },
    )
}

fn unsuback(v5: bool) -> impl Strategy<Value = Packet> {
    let reasons = if v5 { vec(reason(), 0..4).boxed() } else { Just(Vec::new()).boxed() };
    (packet_id(), reasons, ack_properties(v5)).prop_map(|(packet_id, reasons, properties)| {
        Packet::UnsubAck(UnsubAck { packet_id, reasons, properties })
    })
}

fn disconnect_v5() -> impl Strategy<Value = Packet> {
    (reason(), of(any::<u32>()), of(text()), user_properties(), of(text())).prop_map(
        |(reason, session_expiry_interval, reason_string, user_properties, server_reference)| {
            Packet::Disconnect(Disconnect {
                reason,
                properties: DisconnectProperties {
                    session_expiry_interval,
                    reason_string,
                    user_properties,
                    server_reference,
                },
            })
        },
    )
}

fn auth_v5() -> impl Strategy<Value = Packet> {
    (reason(), authentication(), of(text()), user_properties()).prop_map(
        |(reason, (authentication_method, authentication_data), reason_string, user_properties)| {
            Packet::Auth(Auth {
                reason,
                properties: AuthProperties {
                    authentication_method,
                    authentication_data,
                    reason_string,
                    user_properties,
                },
            })
        },
    )
}

/// Any packet that MQTT 3.1/3.1.1 can carry, with 3.x-representable values.
fn packet_v3() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect(false),
        connack(false),
        publish(false).prop_map(Packet::Publish),
        pub_ack(false).prop_map(Packet::PubAck),
        pub_ack(false).prop_map(Packet::PubRec),
        pub_ack(false).prop_map(Packet::PubRel),
        pub_ack(false).prop_map(Packet::PubComp),
        subscribe(false),
        suback(false),
        unsubscribe(false),
        unsuback(false),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect(Disconnect::default())),
    ]
}

/// Any MQTT 5.0 packet.
fn packet_v5() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect(true),
        connack(true),
        publish(true).prop_map(Packet::Publish),
        pub_ack(true).prop_map(Packet::PubAck),
        pub_ack(true).prop_map(Packet::PubRec),
        pub_ack(true).prop_map(Packet::PubRel),
        pub_ack(true).prop_map(Packet::PubComp),
        subscribe(true),
        suback(true),
        unsubscribe(true),
        unsuback(true),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect_v5(),
        auth_v5(),
    ]
}

// ---- checks ----

fn encode_to_bytes(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("a valid packet encodes");
    assert_eq!(buf.len(), encoded_len(packet, version), "encoded_len");
    buf.to_vec()
}

fn check_round_trip(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let bytes = encode_to_bytes(packet, version);
    prop_assert_eq!(frame_length(&bytes, usize::MAX), Ok(FrameStatus::Complete(bytes.len())));
    if let Packet::Publish(publish) = packet {
        let mut direct = BytesMut::new();
        encode_publish(publish, version, &mut direct).expect("publish encodes");
        prop_assert_eq!(&direct[..], &bytes[..]);
    }
    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = decode(&mut buf, version, bytes.len());
    prop_assert_eq!(decoded, Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty());
    Ok(())
}

fn check_split(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let bytes = encode_to_bytes(packet, version);
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        prop_assert_eq!(decode(&mut buf, version, usize::MAX), Ok(None));
        prop_assert_eq!(&buf[..], &bytes[..cut]);
        match frame_length(&bytes[..cut], usize::MAX) {
            Ok(FrameStatus::Incomplete { needed }) => {
                prop_assert!(needed >= 1 && cut + needed <= bytes.len());
            }
            other => prop_assert!(false, "cut at {cut}: {other:?}"),
        }
    }
    // Two packets back to back come out one at a time.
    let mut buf = BytesMut::from(&bytes[..]);
    buf.extend_from_slice(&bytes);
    for _ in 0..2 {
        prop_assert_eq!(decode(&mut buf, version, usize::MAX), Ok(Some(packet.clone())));
    }
    prop_assert!(buf.is_empty());
    Ok(())
}

/// Decodes everything in `bytes`; whatever decodes must re-encode and decode
/// to the same packet.
fn decode_all(bytes: &[u8], version: ProtocolVersion, max_packet_size: usize) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(packet)) = decode(&mut buf, version, max_packet_size) {
        let mut again = BytesMut::new();
        encode(&packet, version, &mut again).expect("a decoded packet re-encodes");
        assert_eq!(again.len(), encoded_len(&packet, version));
        let decoded = decode(&mut again, version, usize::MAX);
        assert_eq!(decoded, Ok(Some(packet)));
        assert!(again.is_empty());
    }
}

/// Failing inputs are printed with the failure; a bug they reveal gets its
/// own named regression test rather than a seed file.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn v311_packets_round_trip(packet in packet_v3()) {
        check_round_trip(&packet, ProtocolVersion::V311)?;
    }

    #[test]
    fn v31_packets_round_trip(packet in packet_v3()) {
        check_round_trip(&packet, ProtocolVersion::V31)?;
    }

    #[test]
    fn v5_packets_round_trip(packet in packet_v5()) {
        check_round_trip(&packet, ProtocolVersion::V5)?;
    }

    #[test]
    fn v311_packets_split_anywhere_are_incomplete(packet in packet_v3()) {
        check_split(&packet, ProtocolVersion::V311)?;
    }

    #[test]
    fn v5_packets_split_anywhere_are_incomplete(packet in packet_v5()) {
        check_split(&packet, ProtocolVersion::V5)?;
    }

}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..256),
        max_packet_size in prop_oneof![Just(usize::MAX), 0usize..300],
    ) {
        for version in VERSIONS {
            decode_all(&bytes, version, max_packet_size);
            let _ = frame_length(&bytes, max_packet_size);
        }
    }

    #[test]
    fn arbitrary_bodies_behind_valid_headers_never_panic(
        first_byte in any::<u8>(),
        body in vec(any::<u8>(), 0..128),
    ) {
        // A correct remaining length gets random bytes past framing into
        // the packet parsers, which is where the work is.
        let mut bytes = vec![first_byte, body.len() as u8];
        bytes.extend_from_slice(&body);
        for version in VERSIONS {
            decode_all(&bytes, version, usize::MAX);
        }
    }

    #[test]
    fn corrupted_v5_packets_never_panic(
        packet in packet_v5(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_to_bytes(&packet, ProtocolVersion::V5);
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        for version in VERSIONS {
            decode_all(&bytes, version, usize::MAX);
        }
    }

    #[test]
    fn corrupted_v311_packets_never_panic(
        packet in packet_v3(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_to_bytes(&packet, ProtocolVersion::V311);
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        for version in VERSIONS {
            decode_all(&bytes, version, usize::MAX);
        }
    }
}
