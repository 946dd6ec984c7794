//! Helpers for the unit tests: build a packet from a fixed-header byte and a
//! body, decode it, and encode packets back.

use bytes::{BufMut, BytesMut};

use crate::primitives::put_variable_byte_integer;
use crate::{decode, encode, encoded_len, DecodeError, Packet, ProtocolVersion};

/// A whole packet: `first_byte`, the remaining length, then `body`.
pub(crate) fn frame(first_byte: u8, body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u8(first_byte);
    put_variable_byte_integer(&mut buf, body.len());
    buf.put_slice(body);
    buf
}

/// Decodes the packet made of `first_byte` and `body`, which must be whole.
pub(crate) fn decode_frame(
    first_byte: u8,
    body: &[u8],
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let mut buf = frame(first_byte, body);
    let packet = decode(&mut buf, version, usize::MAX)?;
    assert!(buf.is_empty(), "decode left bytes behind");
    Ok(packet.expect("a whole packet was given"))
}

/// Encodes `packet`, checking that `encoded_len` agrees with what was written.
pub(crate) fn encode_bytes(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("packet encodes");
    assert_eq!(buf.len(), encoded_len(packet, version), "encoded_len");
    buf.to_vec()
}

/// Encodes then decodes `packet`, returning what was decoded.
pub(crate) fn round_trip(packet: &Packet, version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(&encode_bytes(packet, version)[..]);
    let decoded = decode(&mut buf, version, usize::MAX)
        .expect("encoded packet decodes")
        .expect("encoded packet is whole");
    assert!(buf.is_empty());
    decoded
}
