//! CONNACK (3.1.1 §3.2, 5.0 §3.2): the server's answer to CONNECT.
//!
//! Before 5.0 the reason is a return code 0..=5, mapped both ways through
//! [`ReasonCode::to_v3_connack`] and [`ReasonCode::from_v3_connack`], and
//! there are no properties. Only bit 0 (session present) of the acknowledge
//! flags may be set.

use bytes::{BufMut, BytesMut};

use crate::primitives::Reader;
use crate::properties::{properties_wire_len, read_properties, write_properties};
use crate::{ConnAck, DecodeError, EncodeError, ProtocolVersion, ReasonCode};

const SESSION_PRESENT: u8 = 0x01;

/// Reads the body of a CONNACK.
pub(crate) fn read(body: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = body.read_u8()?;
    if flags & !SESSION_PRESENT != 0 {
        return Err(DecodeError::Malformed("CONNACK reserved flags set"));
    }
    let code = body.read_u8()?;
    let (reason, properties) = if version.is_v5() {
        (ReasonCode(code), read_properties(body)?)
    } else {
        (ReasonCode::from_v3_connack(code), Default::default())
    };
    Ok(ConnAck { session_present: flags & SESSION_PRESENT != 0, reason, properties })
}

pub(crate) fn remaining_len(connack: &ConnAck, version: ProtocolVersion) -> usize {
    if version.is_v5() {
        2 + properties_wire_len(&connack.properties)
    } else {
        2
    }
}

pub(crate) fn write(
    connack: &ConnAck,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    buf.put_u8(u8::from(connack.session_present));
    if version.is_v5() {
        buf.put_u8(connack.reason.0);
        write_properties(&connack.properties, buf)?;
    } else {
        buf.put_u8(connack.reason.to_v3_connack());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_support::{decode_frame, encode_bytes, round_trip};
    use crate::*;

    #[test]
    fn known_bytes_v311_connack() {
        let packet = Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::SUCCESS,
            properties: ConnAckProperties::default(),
        });
        assert_eq!(encode_bytes(&packet, ProtocolVersion::V311), [0x20, 0x02, 0x01, 0x00]);
        assert_eq!(decode_frame(0x20, &[0x01, 0x00], ProtocolVersion::V311), Ok(packet));
    }

    #[test]
    fn v3_return_code_maps_to_reason() {
        assert_eq!(
            decode_frame(0x20, &[0x00, 0x04], ProtocolVersion::V311),
            Ok(Packet::ConnAck(ConnAck {
                reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                ..Default::default()
            }))
        );
    }

    #[test]
    fn v3_reason_maps_to_return_code() {
        let packet = Packet::ConnAck(ConnAck { reason: ReasonCode::BANNED, ..Default::default() });
        assert_eq!(encode_bytes(&packet, ProtocolVersion::V311), [0x20, 0x02, 0x00, 0x05]);
    }

    #[test]
    fn reserved_acknowledge_flags_are_malformed() {
        assert_eq!(
            decode_frame(0x20, &[0x02, 0x00], ProtocolVersion::V311),
            Err(DecodeError::Malformed("CONNACK reserved flags set"))
        );
    }

    #[test]
    fn v3_connack_with_extra_bytes_is_malformed() {
        assert_eq!(
            decode_frame(0x20, &[0x00, 0x00, 0x00], ProtocolVersion::V311),
            Err(DecodeError::Malformed("trailing bytes after the packet"))
        );
    }

    #[test]
    fn known_bytes_v5_connack() {
        let packet = Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: ConnAckProperties {
                maximum_qos: Some(1),
                retain_available: Some(false),
                ..Default::default()
            },
        });
        let bytes = [0x20, 0x07, 0x00, 0x87, 0x04, 0x24, 0x01, 0x25, 0x00];
        assert_eq!(encode_bytes(&packet, ProtocolVersion::V5), bytes);
        assert_eq!(decode_frame(0x20, &bytes[2..], ProtocolVersion::V5), Ok(packet));
    }

    #[test]
    fn v5_connack_round_trips_every_property() {
        let packet = Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode::SUCCESS,
            properties: ConnAckProperties {
                session_expiry_interval: Some(1),
                receive_maximum: Some(2),
                maximum_qos: Some(0),
                retain_available: Some(true),
                maximum_packet_size: Some(3),
                assigned_client_identifier: Some("id".into()),
                topic_alias_maximum: Some(4),
                reason_string: Some("why".into()),
                user_properties: vec![("a".into(), "b".into())],
                wildcard_subscription_available: Some(false),
                subscription_identifiers_available: Some(true),
                shared_subscription_available: Some(false),
                server_keep_alive: Some(5),
                response_information: Some("resp".into()),
                server_reference: Some("other".into()),
                authentication_method: Some("m".into()),
                authentication_data: Some(bytes::Bytes::from_static(b"d")),
            },
        });
        assert_eq!(round_trip(&packet, ProtocolVersion::V5), packet);
    }
}
