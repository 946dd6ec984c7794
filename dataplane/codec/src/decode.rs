//! Decoding: fixed header framing, then one parser per packet type.
//!
//! Framing ([`frame_length`]) looks only at the fixed header: it says how
//! many bytes the packet needs and refuses one larger than the maximum packet
//! size as soon as the remaining length is known, before the body is
//! buffered. [`decode`] then splits exactly one packet off the read buffer
//! (zero-copy) and hands its body to the packet's module in
//! [`crate::packets`].
//!
//! Invariants: `decode` never panics and never reads past the packet it
//! split off; it either leaves the buffer untouched (`Ok(None)`) or consumes
//! exactly one packet, whether that packet then parses or not; and a packet
//! parses only if every one of its bytes was used.

use bytes::{Buf, BytesMut};

use crate::packets::{
    ack, auth, connack, connect, disconnect, publish, suback, subscribe, unsuback, unsubscribe,
};
use crate::primitives::{parse_variable_byte_integer, Reader};
use crate::{DecodeError, Packet, ProtocolVersion};

/// Whether a buffer holds a whole packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// A whole packet of this many bytes (fixed header included) is there.
    Complete(usize),
    /// At least this many more bytes are needed.
    Incomplete { needed: usize },
}

/// The fixed header of a packet whose size is known.
struct Frame {
    header_len: usize,
    /// Fixed header plus remaining length.
    size: usize,
}

/// Reads the fixed header; `Ok(Err(needed))` when it is not all there yet.
fn read_frame(buf: &[u8], max_packet_size: usize) -> Result<Result<Frame, usize>, DecodeError> {
    let Some(length_bytes) = buf.get(1..) else {
        // Nothing, or only the type byte: at least one length byte is missing.
        return Ok(Err(2 - buf.len()));
    };
    let Some((remaining_len, length_len)) = parse_variable_byte_integer(length_bytes)? else {
        return Ok(Err(1));
    };
    let header_len = 1 + length_len;
    let size = header_len + remaining_len as usize;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
    }
    Ok(Ok(Frame { header_len, size }))
}

/// Reads the fixed header and tells whether a whole packet is buffered.
/// Rejects a remaining length above `max_packet_size` (total packet size, as
/// MQTT 5.0 counts it) before the packet is buffered.
pub fn frame_length(buf: &[u8], max_packet_size: usize) -> Result<FrameStatus, DecodeError> {
    Ok(match read_frame(buf, max_packet_size)? {
        Err(needed) => FrameStatus::Incomplete { needed },
        Ok(frame) if buf.len() < frame.size => FrameStatus::Incomplete { needed: frame.size - buf.len() },
        Ok(frame) => FrameStatus::Complete(frame.size),
    })
}

/// Decodes one packet from the front of `buf`, advancing it past the packet.
/// Returns `Ok(None)` and leaves `buf` untouched when more bytes are needed.
/// `version` is the connection's protocol; CONNECT carries its own.
///
/// On a parse error the bad packet has already been consumed; the caller is
/// expected to close the connection (with the error's reason code).
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let frame = match read_frame(buf, max_packet_size)? {
        Ok(frame) if frame.size <= buf.len() => frame,
        _ => return Ok(None),
    };
    let mut bytes = buf.split_to(frame.size).freeze();
    let first_byte = bytes.get_u8();
    bytes.advance(frame.header_len - 1);
    let mut body = Reader::new(bytes);
    let packet = read_packet(first_byte, &mut body, version)?;
    body.expect_end()?;
    Ok(Some(packet))
}

/// Checks the reserved fixed-header flags of every type but PUBLISH.
fn expect_flags(flags: u8, expected: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    // MQTT 3.1 sets DUP on a retried PUBREL, SUBSCRIBE or UNSUBSCRIBE.
    let v31_retry = version == ProtocolVersion::V31 && expected == 0b0010 && flags == 0b1010;
    if flags == expected || v31_retry {
        Ok(())
    } else {
        Err(DecodeError::Malformed("reserved fixed header flags are wrong"))
    }
}

fn read_packet(first_byte: u8, body: &mut Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let packet_type = first_byte >> 4;
    let flags = first_byte & 0x0F;
    if packet_type == 3 {
        return Ok(Packet::Publish(publish::read(flags, body, version)?));
    }
    let expected_flags = match packet_type {
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    expect_flags(flags, expected_flags, version)?;
    let packet = match packet_type {
        1 => Packet::Connect(Box::new(connect::read(body)?)),
        2 => Packet::ConnAck(connack::read(body, version)?),
        4 => Packet::PubAck(ack::read(body, version)?),
        5 => Packet::PubRec(ack::read(body, version)?),
        6 => Packet::PubRel(ack::read(body, version)?),
        7 => Packet::PubComp(ack::read(body, version)?),
        8 => Packet::Subscribe(subscribe::read(body, version)?),
        9 => Packet::SubAck(suback::read(body, version)?),
        10 => Packet::Unsubscribe(unsubscribe::read(body, version)?),
        11 => Packet::UnsubAck(unsuback::read(body, version)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(disconnect::read(body, version)?),
        15 if version.is_v5() => Packet::Auth(auth::read(body)?),
        15 => return Err(DecodeError::Malformed("AUTH is reserved before MQTT 5.0")),
        _ => return Err(DecodeError::Malformed("reserved packet type 0")),
    };
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{decode_frame, frame};

    const V311: ProtocolVersion = ProtocolVersion::V311;

    #[test]
    fn empty_buffer_needs_two_bytes() {
        assert_eq!(frame_length(&[], 1024), Ok(FrameStatus::Incomplete { needed: 2 }));
    }

    #[test]
    fn type_byte_alone_needs_one_more() {
        assert_eq!(frame_length(&[0x30], 1024), Ok(FrameStatus::Incomplete { needed: 1 }));
    }

    #[test]
    fn partial_remaining_length_needs_one_more() {
        assert_eq!(frame_length(&[0x30, 0x80, 0x80], 1 << 20), Ok(FrameStatus::Incomplete { needed: 1 }));
    }

    #[test]
    fn partial_body_reports_missing_bytes() {
        assert_eq!(frame_length(&[0x30, 0x05, 0, 1], 1024), Ok(FrameStatus::Incomplete { needed: 3 }));
    }

    #[test]
    fn whole_packet_is_complete() {
        assert_eq!(frame_length(&[0xC0, 0x00, 0xFF], 1024), Ok(FrameStatus::Complete(2)));
    }

    #[test]
    fn fifth_length_byte_is_malformed() {
        assert!(matches!(
            frame_length(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], usize::MAX),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn oversize_packet_is_refused_before_the_body_arrives() {
        // Remaining length 200: 203 bytes in all, refused with 3 buffered.
        assert_eq!(
            frame_length(&[0x30, 0xC8, 0x01], 100),
            Err(DecodeError::PacketTooLarge { size: 203, max: 100 })
        );
    }

    #[test]
    fn packet_of_exactly_max_size_is_fine() {
        assert_eq!(frame_length(&[0xC0, 0x00], 2), Ok(FrameStatus::Complete(2)));
    }

    #[test]
    fn decode_refuses_oversize_packet() {
        let mut buf = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
        assert!(matches!(decode(&mut buf, V311, 100), Err(DecodeError::PacketTooLarge { .. })));
    }

    #[test]
    fn incomplete_packet_leaves_buffer_untouched() {
        let mut buf = BytesMut::from(&[0x30, 0x05, 0, 1, b't'][..]);
        assert_eq!(decode(&mut buf, V311, 1024), Ok(None));
        assert_eq!(&buf[..], &[0x30, 0x05, 0, 1, b't']);
    }

    #[test]
    fn decode_consumes_exactly_one_packet() {
        let mut buf = frame(0xC0, &[]);
        buf.extend_from_slice(&frame(0xD0, &[]));
        assert_eq!(decode(&mut buf, V311, 1024), Ok(Some(Packet::PingReq)));
        assert_eq!(&buf[..], &[0xD0, 0x00]);
        assert_eq!(decode(&mut buf, V311, 1024), Ok(Some(Packet::PingResp)));
        assert!(buf.is_empty());
        assert_eq!(decode(&mut buf, V311, 1024), Ok(None));
    }

    #[test]
    fn packet_type_0_is_malformed() {
        assert_eq!(decode_frame(0x00, &[], V311), Err(DecodeError::Malformed("reserved packet type 0")));
    }

    #[test]
    fn auth_type_before_v5_is_malformed() {
        assert_eq!(
            decode_frame(0xF0, &[], V311),
            Err(DecodeError::Malformed("AUTH is reserved before MQTT 5.0"))
        );
    }

    #[test]
    fn pingreq_with_body_is_malformed() {
        assert_eq!(
            decode_frame(0xC0, &[0], V311),
            Err(DecodeError::Malformed("trailing bytes after the packet"))
        );
    }

    #[test]
    fn pingresp_with_body_is_malformed() {
        assert_eq!(
            decode_frame(0xD0, &[0], ProtocolVersion::V5),
            Err(DecodeError::Malformed("trailing bytes after the packet"))
        );
    }

    #[test]
    fn pingreq_with_flags_is_malformed() {
        assert_eq!(
            decode_frame(0xC1, &[], V311),
            Err(DecodeError::Malformed("reserved fixed header flags are wrong"))
        );
    }

    #[test]
    fn connect_with_flags_is_malformed() {
        assert_eq!(
            decode_frame(0x12, &[], V311),
            Err(DecodeError::Malformed("reserved fixed header flags are wrong"))
        );
    }

    #[test]
    fn subscribe_with_dup_is_malformed_after_v31() {
        assert_eq!(
            decode_frame(0x8A, &[0, 1, 0, 1, b't', 0], V311),
            Err(DecodeError::Malformed("reserved fixed header flags are wrong"))
        );
    }
}
