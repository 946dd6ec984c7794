//! AUTH (5.0 §3.15): extended authentication exchange. MQTT 5.0 only; packet
//! type 15 is reserved before 5.0 and refused by the dispatcher.
//!
//! Remaining length 0 means Success without properties. A reason code
//! without a property block is accepted when reading; the encoder always
//! writes the property length after a reason code.

use bytes::{BufMut, BytesMut};

use crate::primitives::Reader;
use crate::properties::{properties_len, properties_wire_len, read_properties, write_properties};
use crate::{Auth, DecodeError, EncodeError, ReasonCode};

/// Reads the body of an AUTH.
pub(crate) fn read(body: &mut Reader) -> Result<Auth, DecodeError> {
    if body.is_empty() {
        return Ok(Auth::default());
    }
    let reason = ReasonCode(body.read_u8()?);
    let properties = if body.is_empty() { Default::default() } else { read_properties(body)? };
    Ok(Auth { reason, properties })
}

pub(crate) fn remaining_len(auth: &Auth) -> usize {
    if auth.reason == ReasonCode::SUCCESS && properties_len(&auth.properties) == 0 {
        0
    } else {
        1 + properties_wire_len(&auth.properties)
    }
}

pub(crate) fn write(auth: &Auth, buf: &mut BytesMut) -> Result<(), EncodeError> {
    if remaining_len(auth) == 0 {
        return Ok(());
    }
    buf.put_u8(auth.reason.0);
    write_properties(&auth.properties, buf)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use crate::test_support::{decode_frame, encode_bytes, round_trip};
    use crate::*;

    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn remaining_length_0_is_success() {
        assert_eq!(decode_frame(0xF0, &[], V5), Ok(Packet::Auth(Auth::default())));
        assert_eq!(encode_bytes(&Packet::Auth(Auth::default()), V5), [0xF0, 0x00]);
    }

    #[test]
    fn known_bytes_continue_authentication() {
        let packet = Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some("SCRAM".into()),
                authentication_data: Some(bytes::Bytes::from_static(b"\x01\x02")),
                ..Default::default()
            },
        });
        let bytes = [
            0xF0, 0x0F, 0x18, 0x0D, 0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', 0x16, 0x00, 0x02, 0x01,
            0x02,
        ];
        assert_eq!(encode_bytes(&packet, V5), bytes);
        assert_eq!(decode_frame(0xF0, &bytes[2..], V5), Ok(packet.clone()));
        assert_eq!(round_trip(&packet, V5), packet);
    }

    #[test]
    fn auth_before_v5_is_malformed() {
        assert!(matches!(decode_frame(0xF0, &[], ProtocolVersion::V311), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn auth_with_flags_is_malformed() {
        assert!(matches!(decode_frame(0xF1, &[], V5), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn encode_auth_before_v5_is_invalid() {
        let mut buf = BytesMut::new();
        assert!(matches!(
            encode(&Packet::Auth(Auth::default()), ProtocolVersion::V311, &mut buf),
            Err(EncodeError::Invalid(_))
        ));
    }
}
