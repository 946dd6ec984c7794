//! Wire primitives shared by every packet: the Variable Byte Integer, two- and
//! four-byte integers, UTF-8 strings and binary data.
//!
//! Reading goes through [`Reader`], a bounds-checked view of one packet's
//! bytes. Invariant: no read ever panics; a read past the end of the packet is
//! `DecodeError::Malformed`, and binary data is handed out as a zero-copy
//! slice of the packet. Writing goes straight into the caller's `BytesMut`;
//! the `*_len` functions give the exact size each writer produces, so a packet
//! can be sized before a single byte is written.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError};

/// The largest value a Variable Byte Integer can carry.
pub(crate) const MAX_VARIABLE_BYTE_INTEGER: u32 = 268_435_455;

/// Parses a Variable Byte Integer at the start of `bytes`.
///
/// Returns `Ok(None)` when `bytes` ends before the integer does, and
/// `Ok(Some((value, bytes_used)))` otherwise. A fourth byte with the
/// continuation bit set is malformed: the integer has at most four bytes.
pub(crate) fn parse_variable_byte_integer(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (index, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::Malformed("variable byte integer longer than four bytes"))
    } else {
        Ok(None)
    }
}

/// A bounds-checked cursor over the bytes of one packet (or of one property
/// block inside it).
#[derive(Debug)]
pub(crate) struct Reader {
    bytes: Bytes,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes) -> Reader {
        Reader { bytes }
    }

    /// The number of unread bytes.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Fails unless every byte has been read: trailing bytes are malformed.
    pub(crate) fn expect_end(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed("trailing bytes after the packet"))
        }
    }

    fn ensure(&self, needed: usize) -> Result<(), DecodeError> {
        if self.bytes.len() < needed {
            Err(DecodeError::Malformed("field runs past the end of the packet"))
        } else {
            Ok(())
        }
    }

    pub(crate) fn read_u8(&mut self) -> Result<u8, DecodeError> {
        self.ensure(1)?;
        Ok(self.bytes.get_u8())
    }

    pub(crate) fn read_u16(&mut self) -> Result<u16, DecodeError> {
        self.ensure(2)?;
        Ok(self.bytes.get_u16())
    }

    pub(crate) fn read_u32(&mut self) -> Result<u32, DecodeError> {
        self.ensure(4)?;
        Ok(self.bytes.get_u32())
    }

    /// Reads a packet identifier, which is never 0 on the wire.
    pub(crate) fn read_packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.read_u16()? {
            0 => Err(DecodeError::Malformed("packet identifier 0")),
            packet_id => Ok(packet_id),
        }
    }

    pub(crate) fn read_variable_byte_integer(&mut self) -> Result<u32, DecodeError> {
        match parse_variable_byte_integer(&self.bytes)? {
            Some((value, used)) => {
                self.bytes.advance(used);
                Ok(value)
            }
            None => Err(DecodeError::Malformed("variable byte integer runs past the end of the packet")),
        }
    }

    /// Splits off the next `len` bytes as their own reader.
    pub(crate) fn split(&mut self, len: usize) -> Result<Reader, DecodeError> {
        self.ensure(len)?;
        Ok(Reader::new(self.bytes.split_to(len)))
    }

    /// Reads two-byte-length-prefixed binary data, as a slice of the packet.
    pub(crate) fn read_binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.read_u16()?);
        self.ensure(len)?;
        Ok(self.bytes.split_to(len))
    }

    /// Reads a UTF-8 Encoded String: valid UTF-8 without U+0000. (Rust
    /// strings cannot hold the surrogates U+D800..U+DFFF the spec also bans.)
    pub(crate) fn read_string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.read_u16()?);
        self.ensure(len)?;
        let raw = self.bytes.split_to(len);
        let text =
            std::str::from_utf8(&raw).map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))?;
        if text.contains('\0') {
            return Err(DecodeError::Malformed("string contains U+0000"));
        }
        Ok(text.to_owned())
    }

    /// Takes every unread byte (a PUBLISH payload), as a slice of the packet.
    pub(crate) fn read_rest(&mut self) -> Bytes {
        std::mem::take(&mut self.bytes)
    }
}

/// The number of bytes `value` takes as a Variable Byte Integer.
pub(crate) fn variable_byte_integer_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` as a Variable Byte Integer. Callers check the value against
/// [`MAX_VARIABLE_BYTE_INTEGER`] first; a larger one would take extra bytes.
pub(crate) fn put_variable_byte_integer(buf: &mut BytesMut, value: usize) {
    let mut rest = value;
    loop {
        let mut byte = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if rest == 0 {
            break;
        }
    }
}

/// The wire size of a string: two length bytes and the UTF-8 bytes.
pub(crate) fn string_len(text: &str) -> usize {
    2 + text.len()
}

/// The wire size of binary data: two length bytes and the data.
pub(crate) fn binary_len(data: &[u8]) -> usize {
    2 + data.len()
}

/// Writes a length-prefixed string; `field` names it in the error.
pub(crate) fn put_string(buf: &mut BytesMut, text: &str, field: &'static str) -> Result<(), EncodeError> {
    put_binary(buf, text.as_bytes(), field)
}

/// Writes length-prefixed binary data; `field` names it in the error.
pub(crate) fn put_binary(buf: &mut BytesMut, data: &[u8], field: &'static str) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong(field))?;
    buf.put_u16(len);
    buf.put_slice(data);
    Ok(())
}

/// Writes a packet identifier, refusing 0, which no receiver accepts.
pub(crate) fn put_packet_id(buf: &mut BytesMut, packet_id: u16) -> Result<(), EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::Invalid("packet identifier 0"));
    }
    buf.put_u16(packet_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader {
        Reader::new(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn variable_byte_integer_known_values() {
        for (value, wire) in [
            (0usize, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut buf = BytesMut::new();
            put_variable_byte_integer(&mut buf, value);
            assert_eq!(&buf[..], wire, "encoding {value}");
            assert_eq!(variable_byte_integer_len(value), wire.len());
            let parsed = parse_variable_byte_integer(wire).unwrap();
            assert_eq!(parsed, Some((value as u32, wire.len())));
        }
    }

    #[test]
    fn variable_byte_integer_fifth_byte_is_malformed() {
        assert!(matches!(
            parse_variable_byte_integer(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn variable_byte_integer_incomplete_is_none() {
        assert_eq!(parse_variable_byte_integer(&[0x80, 0x80]).unwrap(), None);
        assert_eq!(parse_variable_byte_integer(&[]).unwrap(), None);
    }

    #[test]
    fn string_with_nul_is_malformed() {
        let result = reader(&[0x00, 0x03, b'a', 0x00, b'b']).read_string();
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn string_with_invalid_utf8_is_malformed() {
        let result = reader(&[0x00, 0x02, 0xC3, 0x28]).read_string();
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn string_encoded_surrogate_is_malformed() {
        // U+D800 encoded as if it were a scalar value (CESU-style).
        let result = reader(&[0x00, 0x03, 0xED, 0xA0, 0x80]).read_string();
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn string_longer_than_packet_is_malformed() {
        let result = reader(&[0x00, 0x05, b'a', b'b']).read_string();
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn binary_longer_than_packet_is_malformed() {
        let result = reader(&[0x00, 0x05, 1, 2]).read_binary();
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn packet_id_zero_is_malformed() {
        let result = reader(&[0x00, 0x00]).read_packet_id();
        assert_eq!(result, Err(DecodeError::Malformed("packet identifier 0")));
    }

    #[test]
    fn string_over_65535_bytes_is_too_long() {
        let text = "a".repeat(65_536);
        let mut buf = BytesMut::new();
        assert_eq!(put_string(&mut buf, &text, "topic"), Err(EncodeError::FieldTooLong("topic")));
    }

    #[test]
    fn string_of_65535_bytes_is_fine() {
        let text = "a".repeat(65_535);
        let mut buf = BytesMut::new();
        put_string(&mut buf, &text, "topic").unwrap();
        assert_eq!(buf.len(), string_len(&text));
    }
}
