//! SUBACK (3.1.1 §3.9, 5.0 §3.9): one result per filter of a SUBSCRIBE.
//!
//! Before 5.0 each result is a return code, one of 0, 1, 2 (granted QoS) or
//! 0x80 (failure); the encoder maps any reason code onto these with
//! [`ReasonCode::to_v3_suback`]. In 5.0 each result is a reason code, kept as
//! received.

use bytes::{BufMut, BytesMut};

use crate::primitives::{put_packet_id, Reader};
use crate::properties::{properties_wire_len, read_properties, write_properties};
use crate::{DecodeError, EncodeError, ProtocolVersion, ReasonCode, SubAck};

/// Reads the body of a SUBACK.
pub(crate) fn read(body: &mut Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = body.read_packet_id()?;
    let properties = if version.is_v5() { read_properties(body)? } else { Default::default() };
    let mut reasons = Vec::with_capacity(body.remaining());
    while !body.is_empty() {
        let code = body.read_u8()?;
        if !version.is_v5() && !matches!(code, 0 | 1 | 2 | 0x80) {
            return Err(DecodeError::Malformed("SUBACK return code not 0, 1, 2 or 0x80"));
        }
        reasons.push(ReasonCode(code));
    }
    Ok(SubAck { packet_id, reasons, properties })
}

pub(crate) fn remaining_len(suback: &SubAck, version: ProtocolVersion) -> usize {
    let mut len = 2 + suback.reasons.len();
    if version.is_v5() {
        len += properties_wire_len(&suback.properties);
    }
    len
}

pub(crate) fn write(
    suback: &SubAck,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    put_packet_id(buf, suback.packet_id)?;
    if version.is_v5() {
        write_properties(&suback.properties, buf)?;
        for reason in &suback.reasons {
            buf.put_u8(reason.0);
        }
    } else {
        for reason in &suback.reasons {
            buf.put_u8(reason.to_v3_suback());
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
    fn known_bytes_v311_suback() {
        let packet = Packet::SubAck(SubAck {
            packet_id: 10,
            reasons: vec![
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::UNSPECIFIED_ERROR,
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GRANTED_QOS_2,
            ],
            properties: AckProperties::default(),
        });
        let bytes = [0x90, 0x06, 0x00, 0x0A, 0x01, 0x80, 0x00, 0x02];
        assert_eq!(encode_bytes(&packet, V311), bytes);
        assert_eq!(decode_frame(0x90, &bytes[2..], V311), Ok(packet));
    }

    #[test]
    fn v3_encoding_maps_failures_to_0x80() {
        let packet = Packet::SubAck(SubAck {
            packet_id: 1,
            reasons: vec![ReasonCode::TOPIC_FILTER_INVALID],
            properties: AckProperties::default(),
        });
        assert_eq!(encode_bytes(&packet, V311), [0x90, 0x03, 0, 1, 0x80]);
    }

    #[test]
    fn v3_unknown_return_code_is_malformed() {
        assert_eq!(
            decode_frame(0x90, &[0, 1, 0x03], V311),
            Err(DecodeError::Malformed("SUBACK return code not 0, 1, 2 or 0x80"))
        );
    }

    #[test]
    fn v5_reason_codes_are_kept() {
        let packet = Packet::SubAck(SubAck {
            packet_id: 1,
            reasons: vec![ReasonCode::TOPIC_FILTER_INVALID, ReasonCode::GRANTED_QOS_1],
            properties: AckProperties { reason_string: Some("bad filter".into()), user_properties: vec![] },
        });
        assert_eq!(round_trip(&packet, V5), packet);
    }

    #[test]
    fn packet_id_0_is_malformed() {
        assert_eq!(decode_frame(0x90, &[0, 0, 0], V311), Err(DecodeError::Malformed("packet identifier 0")));
    }
}
