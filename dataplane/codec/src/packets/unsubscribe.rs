//! UNSUBSCRIBE (3.1.1 §3.10, 5.0 §3.10): a list of topic filters to drop.
//!
//! Invariants checked on decode: at least one filter, none empty. As for
//! SUBSCRIBE, the wildcard placement inside a filter is the broker's business.

use bytes::BytesMut;

use crate::primitives::{put_packet_id, put_string, string_len, Reader};
use crate::properties::{properties_wire_len, read_properties, write_properties};
use crate::{DecodeError, EncodeError, ProtocolVersion, Unsubscribe};

/// Reads the body of an UNSUBSCRIBE.
pub(crate) fn read(body: &mut Reader, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let packet_id = body.read_packet_id()?;
    let user_properties = if version.is_v5() { read_properties(body)? } else { Vec::new() };
    let mut filters = Vec::new();
    while !body.is_empty() {
        let filter = body.read_string()?;
        if filter.is_empty() {
            return Err(DecodeError::Malformed("empty topic filter"));
        }
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe { packet_id, filters, user_properties })
}

pub(crate) fn remaining_len(unsubscribe: &Unsubscribe, version: ProtocolVersion) -> usize {
    let mut len = 2;
    if version.is_v5() {
        len += properties_wire_len(&unsubscribe.user_properties);
    }
    len + unsubscribe.filters.iter().map(|filter| string_len(filter)).sum::<usize>()
}

pub(crate) fn write(
    unsubscribe: &Unsubscribe,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if unsubscribe.filters.is_empty() {
        return Err(EncodeError::Invalid("UNSUBSCRIBE without topic filters"));
    }
    put_packet_id(buf, unsubscribe.packet_id)?;
    if version.is_v5() {
        write_properties(&unsubscribe.user_properties, buf)?;
    }
    for filter in &unsubscribe.filters {
        put_string(buf, filter, "topic filter")?;
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
    fn known_bytes_v311_unsubscribe() {
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            filters: vec!["a/+".into(), "b".into()],
            user_properties: vec![],
        });
        let bytes = [0xA2, 0x0A, 0, 3, 0, 3, b'a', b'/', b'+', 0, 1, b'b'];
        assert_eq!(encode_bytes(&packet, V311), bytes);
        assert_eq!(decode_frame(0xA2, &bytes[2..], V311), Ok(packet));
    }

    #[test]
    fn v5_user_properties_round_trip() {
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            filters: vec!["x".into()],
            user_properties: vec![("k".into(), "v".into())],
        });
        assert_eq!(round_trip(&packet, V5), packet);
    }

    #[test]
    fn wrong_header_flags_are_malformed() {
        assert!(matches!(decode_frame(0xA0, &[0, 1, 0, 1, b't'], V311), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn no_filters_is_protocol_error() {
        assert_eq!(
            decode_frame(0xA2, &[0, 1, 0], V5),
            Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"))
        );
    }

    #[test]
    fn empty_filter_is_malformed() {
        assert_eq!(
            decode_frame(0xA2, &[0, 1, 0, 0], V311),
            Err(DecodeError::Malformed("empty topic filter"))
        );
    }

    #[test]
    fn packet_id_0_is_malformed() {
        assert_eq!(
            decode_frame(0xA2, &[0, 0, 0, 1, b't'], V311),
            Err(DecodeError::Malformed("packet identifier 0"))
        );
    }

    #[test]
    fn v5_property_other_than_user_property_is_protocol_error() {
        assert_eq!(
            decode_frame(0xA2, &[0, 1, 2, 0x0B, 1, 0, 1, b't'], V5),
            Err(DecodeError::Protocol("property not allowed on this packet"))
        );
    }
}
