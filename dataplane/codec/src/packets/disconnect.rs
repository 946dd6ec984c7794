//! DISCONNECT (3.1.1 §3.14, 5.0 §3.14): the orderly end of a connection.
//!
//! Before 5.0 DISCONNECT is a bare fixed header (remaining length 0). In 5.0
//! remaining length 0 means Normal disconnection without properties, and 1
//! means a reason code without properties; the encoder uses the shortest form.

use bytes::{BufMut, BytesMut};

use crate::primitives::{variable_byte_integer_len, Reader};
use crate::properties::{properties_len, read_properties, write_properties};
use crate::{DecodeError, Disconnect, EncodeError, ProtocolVersion, ReasonCode};

/// Reads the body of a DISCONNECT; before 5.0 there is none.
pub(crate) fn read(body: &mut Reader, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
    if !version.is_v5() || body.is_empty() {
        return Ok(Disconnect::default());
    }
    let reason = ReasonCode(body.read_u8()?);
    let properties = if body.is_empty() { Default::default() } else { read_properties(body)? };
    Ok(Disconnect { reason, properties })
}

pub(crate) fn remaining_len(disconnect: &Disconnect, version: ProtocolVersion) -> usize {
    if !version.is_v5() {
        return 0;
    }
    let properties = properties_len(&disconnect.properties);
    match (disconnect.reason == ReasonCode::NORMAL_DISCONNECTION, properties) {
        (true, 0) => 0,
        (false, 0) => 1,
        _ => 1 + variable_byte_integer_len(properties) + properties,
    }
}

pub(crate) fn write(
    disconnect: &Disconnect,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if remaining_len(disconnect, version) == 0 {
        return Ok(());
    }
    buf.put_u8(disconnect.reason.0);
    if properties_len(&disconnect.properties) > 0 {
        write_properties(&disconnect.properties, buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_support::{decode_frame, encode_bytes, round_trip};
    use crate::*;

    const V311: ProtocolVersion = ProtocolVersion::V311;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn v311_disconnect_is_fixed_header_only() {
        let packet =
            Packet::Disconnect(Disconnect { reason: ReasonCode::SERVER_SHUTTING_DOWN, ..Default::default() });
        assert_eq!(encode_bytes(&packet, V311), [0xE0, 0x00]);
        assert_eq!(decode_frame(0xE0, &[], V311), Ok(Packet::Disconnect(Disconnect::default())));
    }

    #[test]
    fn v311_disconnect_with_body_is_malformed() {
        assert_eq!(
            decode_frame(0xE0, &[0x00], V311),
            Err(DecodeError::Malformed("trailing bytes after the packet"))
        );
    }

    #[test]
    fn disconnect_with_flags_is_malformed() {
        assert!(matches!(decode_frame(0xE1, &[], V5), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v5_remaining_length_0_is_normal() {
        assert_eq!(
            decode_frame(0xE0, &[], V5),
            Ok(Packet::Disconnect(Disconnect {
                reason: ReasonCode::NORMAL_DISCONNECTION,
                properties: DisconnectProperties::default(),
            }))
        );
        assert_eq!(encode_bytes(&Packet::Disconnect(Disconnect::default()), V5), [0xE0, 0x00]);
    }

    #[test]
    fn v5_reason_only() {
        let packet =
            Packet::Disconnect(Disconnect { reason: ReasonCode::DISCONNECT_WITH_WILL, ..Default::default() });
        assert_eq!(encode_bytes(&packet, V5), [0xE0, 0x01, 0x04]);
        assert_eq!(decode_frame(0xE0, &[0x04], V5), Ok(packet));
    }

    #[test]
    fn v5_properties_round_trip() {
        let packet = Packet::Disconnect(Disconnect {
            reason: ReasonCode::SESSION_TAKEN_OVER,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("taken over".into()),
                user_properties: vec![("a".into(), "b".into())],
                server_reference: Some("elsewhere".into()),
            },
        });
        assert_eq!(round_trip(&packet, V5), packet);
    }
}
