//! UNSUBACK (3.1.1 §3.11, 5.0 §3.11): the answer to UNSUBSCRIBE.
//!
//! Before 5.0 the body is exactly the packet identifier and `reasons` stays
//! empty; in 5.0 it carries properties and one reason code per filter.

use bytes::{BufMut, BytesMut};

use crate::primitives::{put_packet_id, Reader};
use crate::properties::{properties_wire_len, read_properties, write_properties};
use crate::{DecodeError, EncodeError, ProtocolVersion, ReasonCode, UnsubAck};

/// Reads the body of an UNSUBACK.
pub(crate) fn read(body: &mut Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let packet_id = body.read_packet_id()?;
    if !version.is_v5() {
        return Ok(UnsubAck { packet_id, ..Default::default() });
    }
    let properties = read_properties(body)?;
    let mut reasons = Vec::with_capacity(body.remaining());
    while !body.is_empty() {
        reasons.push(ReasonCode(body.read_u8()?));
    }
    Ok(UnsubAck { packet_id, reasons, properties })
}

pub(crate) fn remaining_len(unsuback: &UnsubAck, version: ProtocolVersion) -> usize {
    if version.is_v5() {
        2 + properties_wire_len(&unsuback.properties) + unsuback.reasons.len()
    } else {
        2
    }
}

pub(crate) fn write(
    unsuback: &UnsubAck,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    put_packet_id(buf, unsuback.packet_id)?;
    if version.is_v5() {
        write_properties(&unsuback.properties, buf)?;
        for reason in &unsuback.reasons {
            buf.put_u8(reason.0);
        }
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
    fn v311_unsuback_is_packet_id_only() {
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: 7,
            reasons: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: AckProperties::default(),
        });
        assert_eq!(encode_bytes(&packet, V311), [0xB0, 0x02, 0x00, 0x07]);
        assert_eq!(
            decode_frame(0xB0, &[0x00, 0x07], V311),
            Ok(Packet::UnsubAck(UnsubAck { packet_id: 7, ..Default::default() }))
        );
    }

    #[test]
    fn v311_unsuback_with_extra_bytes_is_malformed() {
        assert_eq!(
            decode_frame(0xB0, &[0x00, 0x07, 0x00], V311),
            Err(DecodeError::Malformed("trailing bytes after the packet"))
        );
    }

    #[test]
    fn known_bytes_v5_unsuback() {
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: 7,
            reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: AckProperties::default(),
        });
        let bytes = [0xB0, 0x05, 0x00, 0x07, 0x00, 0x00, 0x11];
        assert_eq!(encode_bytes(&packet, V5), bytes);
        assert_eq!(decode_frame(0xB0, &bytes[2..], V5), Ok(packet.clone()));
        assert_eq!(round_trip(&packet, V5), packet);
    }

    #[test]
    fn packet_id_0_is_malformed() {
        assert_eq!(decode_frame(0xB0, &[0, 0], V311), Err(DecodeError::Malformed("packet identifier 0")));
    }
}
