//! SUBSCRIBE (3.1.1 §3.8, 5.0 §3.8): a list of topic filters, each with its
//! subscription options.
//!
//! Before 5.0 the options byte is the requested QoS alone; in 5.0 it also
//! carries No Local, Retain As Published and Retain Handling. The codec checks
//! the grammar only (at least one filter, none empty, no reserved bits): the
//! placement of wildcards inside a filter is left to the broker, which answers
//! a bad filter with SUBACK 0x8F for that filter instead of closing the
//! connection.

use bytes::{BufMut, BytesMut};

use crate::primitives::{put_packet_id, put_string, string_len, Reader};
use crate::properties::{properties_wire_len, read_properties, write_properties};
use crate::{DecodeError, EncodeError, ProtocolVersion, QoS, RetainHandling, Subscribe, SubscriptionOptions};

const QOS_MASK: u8 = 0x03;
const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;
const RETAIN_HANDLING_MASK: u8 = 0x30;
const RESERVED_V5: u8 = 0xC0;
const RESERVED_V3: u8 = !QOS_MASK;

/// Reads the body of a SUBSCRIBE.
pub(crate) fn read(body: &mut Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = body.read_packet_id()?;
    let properties = if version.is_v5() { read_properties(body)? } else { Default::default() };
    let mut filters = Vec::new();
    while !body.is_empty() {
        let filter = body.read_string()?;
        if filter.is_empty() {
            return Err(DecodeError::Malformed("empty topic filter"));
        }
        let options = parse_options(body.read_u8()?, version)?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe { packet_id, filters, properties })
}

fn parse_options(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version.is_v5() { RESERVED_V5 } else { RESERVED_V3 };
    if byte & reserved != 0 {
        return Err(DecodeError::Malformed("reserved subscription option bits set"));
    }
    let qos = QoS::from_u8(byte & QOS_MASK).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
    let retain_handling = match (byte & RETAIN_HANDLING_MASK) >> RETAIN_HANDLING_SHIFT {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::Protocol("retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & NO_LOCAL != 0,
        retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
        retain_handling,
    })
}

fn options_byte(options: &SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let mut byte = options.qos as u8;
    if version.is_v5() {
        if options.no_local {
            byte |= NO_LOCAL;
        }
        if options.retain_as_published {
            byte |= RETAIN_AS_PUBLISHED;
        }
        byte |= (options.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
    }
    byte
}

pub(crate) fn remaining_len(subscribe: &Subscribe, version: ProtocolVersion) -> usize {
    let mut len = 2;
    if version.is_v5() {
        len += properties_wire_len(&subscribe.properties);
    }
    for (filter, _) in &subscribe.filters {
        len += string_len(filter) + 1;
    }
    len
}

pub(crate) fn write(
    subscribe: &Subscribe,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if subscribe.filters.is_empty() {
        return Err(EncodeError::Invalid("SUBSCRIBE without topic filters"));
    }
    put_packet_id(buf, subscribe.packet_id)?;
    if version.is_v5() {
        write_properties(&subscribe.properties, buf)?;
    }
    for (filter, options) in &subscribe.filters {
        put_string(buf, filter, "topic filter")?;
        buf.put_u8(options_byte(options, version));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use crate::test_support::{decode_frame, encode_bytes, round_trip};
    use crate::*;

    const V311: ProtocolVersion = ProtocolVersion::V311;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn known_bytes_v311_subscribe() {
        let bytes = [
            0x82, 0x0E, // SUBSCRIBE, flags 0010, remaining length 14
            0x00, 0x0A, // packet id 10
            0x00, 0x03, b'a', b'/', b'b', 0x01, // "a/b" QoS 1
            0x00, 0x03, b'c', b'/', b'#', 0x02, // "c/#" QoS 2
        ];
        let packet = Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![
                ("a/b".into(), SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() }),
                ("c/#".into(), SubscriptionOptions { qos: QoS::ExactlyOnce, ..Default::default() }),
            ],
            properties: SubscribeProperties::default(),
        });
        assert_eq!(decode_frame(0x82, &bytes[2..], V311), Ok(packet.clone()));
        assert_eq!(encode_bytes(&packet, V311), bytes);
    }

    #[test]
    fn known_bytes_v5_subscribe() {
        let bytes = [
            0x82,
            0x09, // SUBSCRIBE, remaining length 9
            0x00,
            0x01, // packet id 1
            0x02,
            0x0B,
            0x07, // subscription identifier 7
            0x00,
            0x01,
            b't',        // "t"
            0b0010_1101, // retain handling 2, retain as published, no local, QoS 1
        ];
        let packet = Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(
                "t".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
            properties: SubscribeProperties { subscription_identifier: Some(7), user_properties: vec![] },
        });
        assert_eq!(decode_frame(0x82, &bytes[2..], V5), Ok(packet.clone()));
        assert_eq!(encode_bytes(&packet, V5), bytes);
    }

    #[test]
    fn wrong_header_flags_are_malformed() {
        assert!(matches!(decode_frame(0x80, &[0, 1, 0, 1, b't', 0], V311), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn no_filters_is_protocol_error() {
        assert_eq!(
            decode_frame(0x82, &[0, 1], V311),
            Err(DecodeError::Protocol("SUBSCRIBE without topic filters"))
        );
    }

    #[test]
    fn empty_filter_is_malformed() {
        assert_eq!(
            decode_frame(0x82, &[0, 1, 0, 0, 0], V311),
            Err(DecodeError::Malformed("empty topic filter"))
        );
    }

    #[test]
    fn packet_id_0_is_malformed() {
        assert_eq!(
            decode_frame(0x82, &[0, 0, 0, 1, b't', 0], V311),
            Err(DecodeError::Malformed("packet identifier 0"))
        );
    }

    #[test]
    fn v3_upper_option_bits_are_malformed() {
        assert_eq!(
            decode_frame(0x82, &[0, 1, 0, 1, b't', 0x04], V311),
            Err(DecodeError::Malformed("reserved subscription option bits set"))
        );
    }

    #[test]
    fn v3_qos_3_is_malformed() {
        assert_eq!(
            decode_frame(0x82, &[0, 1, 0, 1, b't', 0x03], V311),
            Err(DecodeError::Malformed("subscription QoS 3"))
        );
    }

    #[test]
    fn v5_reserved_option_bits_are_malformed() {
        assert_eq!(
            decode_frame(0x82, &[0, 1, 0, 0, 1, b't', 0x40], V5),
            Err(DecodeError::Malformed("reserved subscription option bits set"))
        );
    }

    #[test]
    fn v5_qos_3_is_malformed() {
        assert_eq!(
            decode_frame(0x82, &[0, 1, 0, 0, 1, b't', 0x03], V5),
            Err(DecodeError::Malformed("subscription QoS 3"))
        );
    }

    #[test]
    fn v5_retain_handling_3_is_protocol_error() {
        assert_eq!(
            decode_frame(0x82, &[0, 1, 0, 0, 1, b't', 0x30], V5),
            Err(DecodeError::Protocol("retain handling 3"))
        );
    }

    #[test]
    fn v5_subscription_identifier_0_is_protocol_error() {
        assert_eq!(
            decode_frame(0x82, &[0, 1, 2, 0x0B, 0, 0, 1, b't', 0], V5),
            Err(DecodeError::Protocol("subscription identifier 0"))
        );
    }

    #[test]
    fn filter_missing_options_byte_is_malformed() {
        assert!(matches!(decode_frame(0x82, &[0, 1, 0, 1, b't'], V311), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn wildcard_placement_is_not_checked() {
        let Ok(Packet::Subscribe(subscribe)) = decode_frame(0x82, &[0, 1, 0, 3, b'a', b'#', b'b', 0], V311)
        else {
            panic!("expected a SUBSCRIBE");
        };
        assert_eq!(subscribe.filters[0].0, "a#b");
    }

    #[test]
    fn v3_encoding_drops_v5_options() {
        let packet = Packet::Subscribe(Subscribe {
            packet_id: 2,
            filters: vec![(
                "x".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                },
            )],
            properties: SubscribeProperties::default(),
        });
        assert_eq!(encode_bytes(&packet, V311), [0x82, 0x06, 0, 2, 0, 1, b'x', 0x01]);
        assert_eq!(round_trip(&packet, V5), packet);
    }

    #[test]
    fn encode_without_filters_is_invalid() {
        let packet = Packet::Subscribe(Subscribe { packet_id: 1, ..Default::default() });
        let mut buf = BytesMut::new();
        assert_eq!(
            encode(&packet, V311, &mut buf),
            Err(EncodeError::Invalid("SUBSCRIBE without topic filters"))
        );
    }
}
