//! Decode and encode errors, each mapped to the reason code the spec gives.

use crate::ReasonCode;

/// Why a packet could not be decoded. Every variant ends the connection; the
/// reason code says what to put in the DISCONNECT (5.0) or CONNACK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Bytes that break the packet grammar (0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed bytes that break a protocol rule (0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The packet is larger than the maximum packet size (0x95).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    /// CONNECT with an unknown protocol name or level (0x84; 3.1.1 return code 1).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
    /// A PUBLISH topic name that contains a wildcard (0x90).
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(&'static str),
}

impl DecodeError {
    /// The MQTT 5.0 reason code for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid(_) => ReasonCode::TOPIC_NAME_INVALID,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The remaining length would exceed 268,435,455 bytes.
    #[error("packet too large to encode")]
    PacketTooLarge,
    /// A string or binary field is longer than 65,535 bytes.
    #[error("field {0} is longer than 65535 bytes")]
    FieldTooLong(&'static str),
    /// A field value the packet cannot carry (e.g. QoS 1 without a packet id).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}
