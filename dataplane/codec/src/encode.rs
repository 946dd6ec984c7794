//! Encoding: one writer per packet type, into a caller's `BytesMut`.
//!
//! Every packet is sized first (`remaining_len` of its module), checked
//! against [`MAX_REMAINING_LENGTH`], given one `reserve`, and then written
//! straight into the buffer with no intermediate allocation.
//!
//! Invariants: [`encoded_len`] equals the number of bytes [`encode`] appends,
//! and a failed encode leaves the buffer exactly as it found it. CONNECT is
//! written for its own `Connect::protocol`, whatever `version` says, so that
//! a decoded CONNECT always re-encodes to the same packet.

use bytes::{BufMut, BytesMut};

use crate::packets::{
    ack, auth, connack, connect, disconnect, publish, suback, subscribe, unsuback, unsubscribe,
};
use crate::primitives::{put_variable_byte_integer, variable_byte_integer_len};
use crate::{EncodeError, Packet, ProtocolVersion, Publish, PublishRef, MAX_REMAINING_LENGTH};

/// Appends `packet`, encoded for `version`, to `buf`. Fields that `version`
/// cannot carry (properties before 5.0) are left out.
pub fn encode(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let start = buf.len();
    let result = write_packet(packet, version, buf);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Appends a PUBLISH without wrapping it in a [`Packet`] (the fan-out path).
pub fn encode_publish(
    publish: &Publish,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_publish_ref(&publish.as_parts(), version, buf)
}

/// Like [`encode_publish`], from borrowed parts.
pub fn encode_publish_ref(
    publish: &PublishRef<'_>,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = buf.len();
    let remaining = publish::remaining_len(publish, version);
    let result = put_fixed_header(buf, 0x30 | publish::flags(publish), remaining)
        .and_then(|()| publish::write(publish, version, buf));
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// The number of bytes `encode` would write for `packet`. Meaningful for
/// packets that encode without error.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let remaining = remaining_len(packet, version);
    1 + variable_byte_integer_len(remaining) + remaining
}

/// The first byte of the fixed header: packet type and flags.
fn first_byte(packet: &Packet) -> u8 {
    let flags = match packet {
        Packet::Publish(publish) => publish::flags(&publish.as_parts()),
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
        _ => 0,
    };
    (packet.packet_type() << 4) | flags
}

fn remaining_len(packet: &Packet, version: ProtocolVersion) -> usize {
    match packet {
        Packet::Connect(connect) => connect::remaining_len(connect),
        Packet::ConnAck(connack) => connack::remaining_len(connack, version),
        Packet::Publish(publish) => publish::remaining_len(&publish.as_parts(), version),
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            ack::remaining_len(ack, version)
        }
        Packet::Subscribe(subscribe) => subscribe::remaining_len(subscribe, version),
        Packet::SubAck(suback) => suback::remaining_len(suback, version),
        Packet::Unsubscribe(unsubscribe) => unsubscribe::remaining_len(unsubscribe, version),
        Packet::UnsubAck(unsuback) => unsuback::remaining_len(unsuback, version),
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(disconnect) => disconnect::remaining_len(disconnect, version),
        Packet::Auth(auth) => auth::remaining_len(auth),
    }
}

/// Checks the size, reserves room for the whole packet and writes the fixed
/// header.
fn put_fixed_header(buf: &mut BytesMut, first_byte: u8, remaining: usize) -> Result<(), EncodeError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge);
    }
    buf.reserve(1 + variable_byte_integer_len(remaining) + remaining);
    buf.put_u8(first_byte);
    put_variable_byte_integer(buf, remaining);
    Ok(())
}

fn write_packet(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    if matches!(packet, Packet::Auth(_)) && !version.is_v5() {
        return Err(EncodeError::Invalid("AUTH requires MQTT 5.0"));
    }
    put_fixed_header(buf, first_byte(packet), remaining_len(packet, version))?;
    match packet {
        Packet::Connect(connect) => connect::write(connect, buf),
        Packet::ConnAck(connack) => connack::write(connack, version, buf),
        Packet::Publish(publish) => publish::write(&publish.as_parts(), version, buf),
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            ack::write(ack, version, buf)
        }
        Packet::Subscribe(subscribe) => subscribe::write(subscribe, version, buf),
        Packet::SubAck(suback) => suback::write(suback, version, buf),
        Packet::Unsubscribe(unsubscribe) => unsubscribe::write(unsubscribe, version, buf),
        Packet::UnsubAck(unsuback) => unsuback::write(unsuback, version, buf),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(disconnect) => disconnect::write(disconnect, version, buf),
        Packet::Auth(auth) => auth::write(auth, buf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::encode_bytes;

    #[test]
    fn pings_are_two_bytes() {
        assert_eq!(encode_bytes(&Packet::PingReq, ProtocolVersion::V311), [0xC0, 0x00]);
        assert_eq!(encode_bytes(&Packet::PingResp, ProtocolVersion::V5), [0xD0, 0x00]);
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut buf = BytesMut::from(&b"xy"[..]);
        encode(&Packet::PingReq, ProtocolVersion::V311, &mut buf).unwrap();
        assert_eq!(&buf[..], &[b'x', b'y', 0xC0, 0x00]);
    }

    #[test]
    fn failed_encode_leaves_existing_bytes() {
        let mut buf = BytesMut::from(&b"xy"[..]);
        let bad = Packet::PubAck(crate::PubAck::default());
        assert!(encode(&bad, ProtocolVersion::V311, &mut buf).is_err());
        assert_eq!(&buf[..], b"xy");
    }

    #[test]
    fn encoded_len_counts_multi_byte_remaining_length() {
        let publish = Packet::Publish(Publish {
            topic: "t".into(),
            payload: bytes::Bytes::from(vec![7u8; 200]),
            ..Default::default()
        });
        let bytes = encode_bytes(&publish, ProtocolVersion::V311);
        assert_eq!(bytes.len(), 1 + 2 + 3 + 200);
    }
}
