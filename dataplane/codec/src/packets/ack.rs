//! PUBACK, PUBREC, PUBREL and PUBCOMP (3.1.1 §3.4-3.7, 5.0 §3.4-3.7): the
//! QoS 1 and QoS 2 handshakes, which share one shape ([`PubAck`]).
//!
//! Before 5.0 the body is exactly a packet identifier. In 5.0 the reason code
//! and the property block may each be left off: remaining length 2 means
//! Success without properties, 3 means a reason code without properties. The
//! encoder uses the shortest form that carries the packet.

use bytes::{BufMut, BytesMut};

use crate::primitives::{put_packet_id, variable_byte_integer_len, Reader};
use crate::properties::{properties_len, read_properties, write_properties};
use crate::{DecodeError, EncodeError, ProtocolVersion, PubAck, ReasonCode};

/// Reads the body of any of the four acknowledgement packets.
pub(crate) fn read(body: &mut Reader, version: ProtocolVersion) -> Result<PubAck, DecodeError> {
    let packet_id = body.read_packet_id()?;
    if !version.is_v5() || body.is_empty() {
        return Ok(PubAck { packet_id, ..Default::default() });
    }
    let reason = ReasonCode(body.read_u8()?);
    let properties = if body.is_empty() { Default::default() } else { read_properties(body)? };
    Ok(PubAck { packet_id, reason, properties })
}

pub(crate) fn remaining_len(ack: &PubAck, version: ProtocolVersion) -> usize {
    if !version.is_v5() {
        return 2;
    }
    let properties = properties_len(&ack.properties);
    match (ack.reason == ReasonCode::SUCCESS, properties) {
        (true, 0) => 2,
        (false, 0) => 3,
        _ => 3 + variable_byte_integer_len(properties) + properties,
    }
}

pub(crate) fn write(ack: &PubAck, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    put_packet_id(buf, ack.packet_id)?;
    if !version.is_v5() {
        return Ok(());
    }
    let properties = properties_len(&ack.properties);
    if properties == 0 {
        if ack.reason != ReasonCode::SUCCESS {
            buf.put_u8(ack.reason.0);
        }
        return Ok(());
    }
    buf.put_u8(ack.reason.0);
    write_properties(&ack.properties, buf)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use crate::test_support::{decode_frame, encode_bytes, round_trip};
    use crate::*;

    const V311: ProtocolVersion = ProtocolVersion::V311;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn known_bytes_v311_puback() {
        let packet = Packet::PubAck(PubAck { packet_id: 0x1234, ..Default::default() });
        assert_eq!(encode_bytes(&packet, V311), [0x40, 0x02, 0x12, 0x34]);
        assert_eq!(decode_frame(0x40, &[0x12, 0x34], V311), Ok(packet));
    }

    #[test]
    fn pubrel_header_flags_are_0010() {
        let packet = Packet::PubRel(PubAck { packet_id: 1, ..Default::default() });
        assert_eq!(encode_bytes(&packet, V311), [0x62, 0x02, 0x00, 0x01]);
    }

    #[test]
    fn pubrel_with_flags_0000_is_malformed() {
        assert!(matches!(decode_frame(0x60, &[0, 1], V311), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn pubrel_with_dup_is_accepted_in_v31() {
        assert_eq!(
            decode_frame(0x6A, &[0, 1], ProtocolVersion::V31),
            Ok(Packet::PubRel(PubAck { packet_id: 1, ..Default::default() }))
        );
    }

    #[test]
    fn puback_with_flags_set_is_malformed() {
        assert!(matches!(decode_frame(0x42, &[0, 1], V311), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v3_puback_longer_than_2_is_malformed() {
        assert_eq!(
            decode_frame(0x40, &[0, 1, 0], V311),
            Err(DecodeError::Malformed("trailing bytes after the packet"))
        );
    }

    #[test]
    fn v3_puback_shorter_than_2_is_malformed() {
        assert!(matches!(decode_frame(0x40, &[0], V311), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn packet_id_0_is_malformed() {
        assert_eq!(decode_frame(0x50, &[0, 0], V311), Err(DecodeError::Malformed("packet identifier 0")));
    }

    #[test]
    fn v5_remaining_length_2_is_success() {
        assert_eq!(
            decode_frame(0x70, &[0, 5], V5),
            Ok(Packet::PubComp(PubAck {
                packet_id: 5,
                reason: ReasonCode::SUCCESS,
                properties: AckProperties::default(),
            }))
        );
    }

    #[test]
    fn v5_remaining_length_3_is_reason_only() {
        assert_eq!(
            decode_frame(0x50, &[0, 5, 0x10], V5),
            Ok(Packet::PubRec(PubAck {
                packet_id: 5,
                reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
                properties: AckProperties::default(),
            }))
        );
    }

    #[test]
    fn v5_encodes_shortest_form() {
        let success = Packet::PubAck(PubAck { packet_id: 1, ..Default::default() });
        assert_eq!(encode_bytes(&success, V5), [0x40, 0x02, 0x00, 0x01]);
        let reason_only = Packet::PubAck(PubAck {
            packet_id: 1,
            reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            ..Default::default()
        });
        assert_eq!(encode_bytes(&reason_only, V5), [0x40, 0x03, 0x00, 0x01, 0x10]);
    }

    #[test]
    fn v5_properties_round_trip() {
        let packet = Packet::PubRel(PubAck {
            packet_id: 3,
            reason: ReasonCode::SUCCESS,
            properties: AckProperties {
                reason_string: Some("ok".into()),
                user_properties: vec![("k".into(), "v".into())],
            },
        });
        assert_eq!(round_trip(&packet, V5), packet);
    }

    #[test]
    fn v5_property_not_allowed_is_protocol_error() {
        assert_eq!(
            decode_frame(0x40, &[0, 1, 0, 2, 0x01, 0], V5),
            Err(DecodeError::Protocol("property not allowed on this packet"))
        );
    }

    #[test]
    fn v5_duplicate_reason_string_is_protocol_error() {
        assert_eq!(
            decode_frame(0x40, &[0, 1, 0, 6, 0x1F, 0, 0, 0x1F, 0, 0], V5),
            Err(DecodeError::Protocol("property appears more than once"))
        );
    }

    #[test]
    fn encode_packet_id_0_is_invalid() {
        let mut buf = BytesMut::new();
        assert_eq!(
            encode(&Packet::PubAck(PubAck::default()), V311, &mut buf),
            Err(EncodeError::Invalid("packet identifier 0"))
        );
    }
}
