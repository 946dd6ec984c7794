//! PUBLISH (3.1.1 §3.3, 5.0 §3.3): an application message, the hot path.
//!
//! The fixed-header flags carry DUP, QoS and RETAIN. The payload is every
//! byte after the variable header and is handed out as a zero-copy slice of
//! the read buffer. Invariants checked on decode: QoS is 0..=2, DUP is clear
//! at QoS 0, a packet identifier (non-zero) is present exactly at QoS 1 and 2,
//! and the topic name has no wildcard. An empty topic is allowed only in 5.0
//! with a Topic Alias.

use bytes::{BufMut, BytesMut};

use crate::primitives::{put_packet_id, put_string, string_len, Reader};
use crate::properties::{properties_wire_len, read_properties, write_properties};
use crate::{DecodeError, EncodeError, ProtocolVersion, Publish, PublishProperties, PublishRef, QoS};

const DUP: u8 = 0x08;
const QOS_SHIFT: u8 = 1;
const QOS_MASK: u8 = 0x06;
const RETAIN: u8 = 0x01;

/// Refuses a topic name with a wildcard character; topic names (unlike
/// filters) name exactly one topic.
pub(crate) fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.contains(['+', '#']) {
        Err(DecodeError::TopicNameInvalid("topic name contains a wildcard"))
    } else {
        Ok(())
    }
}

/// Reads a PUBLISH whose fixed-header flags are `flags`.
pub(crate) fn read(flags: u8, body: &mut Reader, version: ProtocolVersion) -> Result<Publish, DecodeError> {
    let dup = flags & DUP != 0;
    let retain = flags & RETAIN != 0;
    let qos = QoS::from_u8((flags & QOS_MASK) >> QOS_SHIFT).ok_or(DecodeError::Malformed("PUBLISH QoS 3"))?;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
    }

    let topic = body.read_string()?;
    check_topic_name(&topic)?;
    let packet_id = if qos == QoS::AtMostOnce { None } else { Some(body.read_packet_id()?) };
    let properties: PublishProperties =
        if version.is_v5() { read_properties(body)? } else { Default::default() };
    if topic.is_empty() {
        if !version.is_v5() {
            return Err(DecodeError::Malformed("empty topic name"));
        }
        if properties.topic_alias.is_none() {
            return Err(DecodeError::Protocol("empty topic without topic alias"));
        }
    }

    Ok(Publish { dup, qos, retain, topic, packet_id, properties, payload: body.read_rest() })
}

/// The fixed-header flags of `publish`.
pub(crate) fn flags(publish: &PublishRef<'_>) -> u8 {
    let mut flags = (publish.qos as u8) << QOS_SHIFT;
    if publish.dup {
        flags |= DUP;
    }
    if publish.retain {
        flags |= RETAIN;
    }
    flags
}

pub(crate) fn remaining_len(publish: &PublishRef<'_>, version: ProtocolVersion) -> usize {
    let mut len = string_len(publish.topic) + publish.payload.len();
    if publish.qos != QoS::AtMostOnce {
        len += 2;
    }
    if version.is_v5() {
        len += match publish.properties {
            Some(properties) => properties_wire_len(properties),
            // An empty property set: its length, zero, in one byte.
            None => 1,
        };
    }
    len
}

/// Writes the body of `publish`. A packet identifier on a QoS 0 message is
/// left out rather than refused: the wire form is valid either way.
pub(crate) fn write(
    publish: &PublishRef<'_>,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    put_string(buf, publish.topic, "topic name")?;
    if publish.qos != QoS::AtMostOnce {
        let packet_id =
            publish.packet_id.ok_or(EncodeError::Invalid("QoS 1 or 2 PUBLISH without packet id"))?;
        put_packet_id(buf, packet_id)?;
    }
    if version.is_v5() {
        match publish.properties {
            Some(properties) => write_properties(properties, buf)?,
            None => buf.put_u8(0),
        }
    }
    buf.put_slice(publish.payload);
    Ok(())
}

impl Publish {
    /// This PUBLISH as borrowed parts, for [`crate::encode_publish_ref`].
    pub fn as_parts(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: Some(&self.properties),
            payload: &self.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use crate::test_support::{decode_frame, encode_bytes, round_trip};
    use crate::*;

    const V311: ProtocolVersion = ProtocolVersion::V311;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    /// Borrowed parts encode exactly as the owned PUBLISH; no properties
    /// encode as an empty set.
    #[test]
    fn encoding_from_parts_matches_the_owned_packet() {
        for version in [V311, V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let mut publish = Publish {
                    dup: qos != QoS::AtMostOnce,
                    qos,
                    retain: true,
                    topic: "a/b".into(),
                    packet_id: (qos != QoS::AtMostOnce).then_some(7),
                    properties: Default::default(),
                    payload: Bytes::from_static(b"payload"),
                };
                let mut owned = BytesMut::new();
                encode_publish(&publish, version, &mut owned).unwrap();
                let mut parts = publish.as_parts();
                parts.properties = None;
                let mut borrowed = BytesMut::new();
                encode_publish_ref(&parts, version, &mut borrowed).unwrap();
                assert_eq!(owned, borrowed, "{version:?} {qos:?} without properties");

                publish.properties.message_expiry_interval = Some(9);
                publish.properties.subscription_identifiers = vec![3];
                let mut owned = BytesMut::new();
                encode_publish(&publish, version, &mut owned).unwrap();
                let mut borrowed = BytesMut::new();
                encode_publish_ref(&publish.as_parts(), version, &mut borrowed).unwrap();
                assert_eq!(owned, borrowed, "{version:?} {qos:?} with properties");
            }
        }
    }

    #[test]
    fn known_bytes_v311_qos1_publish() {
        let bytes = [
            0x3B, 0x0A, // PUBLISH, DUP, QoS 1, retain; remaining length 10
            0x00, 0x03, b'a', b'/', b'b', // topic
            0x00, 0x07, // packet id 7
            b'h', b'i', b'!', // payload
        ];
        let packet = Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: Some(7),
            properties: PublishProperties::default(),
            payload: Bytes::from_static(b"hi!"),
        });
        assert_eq!(decode_frame(0x3B, &bytes[2..], V311), Ok(packet.clone()));
        assert_eq!(encode_bytes(&packet, V311), bytes);
    }

    #[test]
    fn known_bytes_v5_publish_with_alias_and_empty_topic() {
        let bytes = [
            0x30, 0x07, // PUBLISH QoS 0, remaining length 7
            0x00, 0x00, // empty topic
            0x03, 0x23, 0x00, 0x05, // topic alias 5
            b'x', // payload
        ];
        let packet = Packet::Publish(Publish {
            topic: String::new(),
            properties: PublishProperties { topic_alias: Some(5), ..Default::default() },
            payload: Bytes::from_static(b"x"),
            ..Default::default()
        });
        assert_eq!(decode_frame(0x30, &bytes[2..], V5), Ok(packet.clone()));
        assert_eq!(encode_bytes(&packet, V5), bytes);
    }

    #[test]
    fn payload_is_a_slice_of_the_read_buffer() {
        let mut buf = crate::test_support::frame(0x30, &[0, 1, b't', 1, 2, 3]);
        let start = buf.as_ptr() as usize;
        let Ok(Some(Packet::Publish(publish))) = decode(&mut buf, V311, 1024) else {
            panic!("expected a PUBLISH");
        };
        assert_eq!(publish.payload.as_ptr() as usize, start + 5);
    }

    #[test]
    fn qos_3_is_malformed() {
        assert_eq!(
            decode_frame(0x36, &[0, 1, b't', 0, 1], V311),
            Err(DecodeError::Malformed("PUBLISH QoS 3"))
        );
    }

    #[test]
    fn dup_on_qos_0_is_malformed() {
        assert_eq!(
            decode_frame(0x38, &[0, 1, b't'], V311),
            Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"))
        );
    }

    #[test]
    fn packet_id_0_is_malformed() {
        assert_eq!(
            decode_frame(0x32, &[0, 1, b't', 0, 0], V311),
            Err(DecodeError::Malformed("packet identifier 0"))
        );
    }

    #[test]
    fn packet_id_0_is_malformed_in_v5() {
        assert_eq!(
            decode_frame(0x34, &[0, 1, b't', 0, 0, 0], V5),
            Err(DecodeError::Malformed("packet identifier 0"))
        );
    }

    #[test]
    fn plus_in_topic_is_invalid() {
        assert!(matches!(
            decode_frame(0x30, &[0, 3, b'a', b'/', b'+'], V311),
            Err(DecodeError::TopicNameInvalid(_))
        ));
    }

    #[test]
    fn hash_in_topic_is_invalid() {
        assert!(matches!(decode_frame(0x30, &[0, 1, b'#', 0], V5), Err(DecodeError::TopicNameInvalid(_))));
    }

    #[test]
    fn empty_topic_without_alias_is_protocol_error_in_v5() {
        assert_eq!(
            decode_frame(0x30, &[0, 0, 0], V5),
            Err(DecodeError::Protocol("empty topic without topic alias"))
        );
    }

    #[test]
    fn empty_topic_is_malformed_in_v311() {
        assert_eq!(decode_frame(0x30, &[0, 0, b'p'], V311), Err(DecodeError::Malformed("empty topic name")));
    }

    #[test]
    fn topic_alias_0_is_protocol_error() {
        assert_eq!(
            decode_frame(0x30, &[0, 1, b't', 3, 0x23, 0, 0], V5),
            Err(DecodeError::Protocol("topic alias 0"))
        );
    }

    #[test]
    fn nul_in_topic_is_malformed() {
        assert_eq!(
            decode_frame(0x30, &[0, 2, b't', 0], V311),
            Err(DecodeError::Malformed("string contains U+0000"))
        );
    }

    #[test]
    fn topic_longer_than_packet_is_malformed() {
        assert!(matches!(decode_frame(0x30, &[0, 9, b't'], V311), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn missing_property_length_is_malformed_in_v5() {
        assert!(matches!(decode_frame(0x30, &[0, 1, b't'], V5), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn encode_qos1_without_packet_id_is_invalid() {
        let publish = Publish { qos: QoS::AtLeastOnce, topic: "t".into(), ..Default::default() };
        let mut buf = BytesMut::new();
        assert_eq!(
            encode_publish(&publish, V311, &mut buf),
            Err(EncodeError::Invalid("QoS 1 or 2 PUBLISH without packet id"))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_topic_over_65535_bytes_is_too_long() {
        let publish = Publish { topic: "t".repeat(65_536), ..Default::default() };
        let mut buf = BytesMut::new();
        assert_eq!(encode_publish(&publish, V311, &mut buf), Err(EncodeError::FieldTooLong("topic name")));
    }

    #[test]
    fn encode_over_maximum_remaining_length_is_too_large() {
        let publish = Publish {
            topic: "t".into(),
            payload: Bytes::from(vec![0u8; MAX_REMAINING_LENGTH]),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        assert_eq!(encode_publish(&publish, V311, &mut buf), Err(EncodeError::PacketTooLarge));
    }

    #[test]
    fn v5_properties_round_trip_and_v3_drops_them() {
        let publish = Publish {
            qos: QoS::ExactlyOnce,
            topic: "a".into(),
            packet_id: Some(9),
            properties: PublishProperties {
                payload_format_indicator: Some(1),
                subscription_identifiers: vec![4, 5],
                ..Default::default()
            },
            ..Default::default()
        };
        let packet = Packet::Publish(publish.clone());
        assert_eq!(round_trip(&packet, V5), packet);
        let stripped = Packet::Publish(Publish { properties: PublishProperties::default(), ..publish });
        assert_eq!(round_trip(&packet, V311), stripped);
    }

    #[test]
    fn encode_publish_matches_encode() {
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: "a/b".into(),
            packet_id: Some(1),
            payload: Bytes::from_static(b"payload"),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        encode_publish(&publish, V5, &mut buf).unwrap();
        assert_eq!(&buf[..], encode_bytes(&Packet::Publish(publish), V5));
    }
}
