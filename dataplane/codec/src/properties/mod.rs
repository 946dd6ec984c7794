//! MQTT 5.0 properties (spec §2.2.2): the property block that follows a
//! variable header, read into and written from the per-packet property
//! structs of [`crate::packet`].
//!
//! Reading is in two steps: [`read_property`] turns one identifier and its
//! value into a typed [`Property`], checking the value against the rules that
//! hold on every packet (e.g. Receive Maximum is never 0); then the packet's
//! [`PropertySet::apply`] stores it, refusing properties the packet cannot
//! carry and duplicates. Writing walks the same struct twice through
//! [`PropertySet::for_each`]: once to size the block, once to write it, so no
//! intermediate buffer is allocated.
//!
//! Error policy, kept the same on every packet: an unknown identifier or a
//! value that runs past the block is `Malformed`; a known property on the
//! wrong packet, a duplicate, or an out-of-range value is `Protocol`.

mod sets;

use bytes::{BufMut, Bytes, BytesMut};

use crate::primitives::{
    binary_len, put_binary, put_string, put_variable_byte_integer, string_len, variable_byte_integer_len,
    Reader, MAX_VARIABLE_BYTE_INTEGER,
};
use crate::{DecodeError, EncodeError};

/// Property identifiers (spec §2.2.2.2).
pub(crate) mod id {
    pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub(crate) const CONTENT_TYPE: u8 = 0x03;
    pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
    pub(crate) const CORRELATION_DATA: u8 = 0x09;
    pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
    pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
    pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
    pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
    pub(crate) const REASON_STRING: u8 = 0x1F;
    pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
    pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub(crate) const TOPIC_ALIAS: u8 = 0x23;
    pub(crate) const MAXIMUM_QOS: u8 = 0x24;
    pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
    pub(crate) const USER_PROPERTY: u8 = 0x26;
    pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// One decoded property, its value already checked against the rules that
/// hold on every packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Property {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Bytes),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(String),
    ServerKeepAlive(u16),
    AuthenticationMethod(String),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQos(u8),
    RetainAvailable(bool),
    /// A User Property (name, value); the one property any packet may repeat.
    User(String, String),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

/// A property value to encode, borrowed from the packet struct.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VariableByte(u32),
    String(&'a str),
    Binary(&'a [u8]),
    Pair(&'a str, &'a str),
}

impl Value<'_> {
    /// Wire size of the value, identifier excluded.
    fn len(self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::TwoByte(_) => 2,
            Value::FourByte(_) => 4,
            Value::VariableByte(value) => variable_byte_integer_len(value as usize),
            Value::String(text) => string_len(text),
            Value::Binary(data) => binary_len(data),
            Value::Pair(name, value) => string_len(name) + string_len(value),
        }
    }
}

/// A packet's property struct: what it accepts when decoding and what it
/// emits when encoding.
pub(crate) trait PropertySet: Default {
    /// Stores one decoded property. A property this packet cannot carry, or a
    /// second copy of a single-valued one, is a protocol error.
    fn apply(&mut self, property: Property) -> Result<(), DecodeError>;

    /// Calls `emit` with the identifier and value of every property to write.
    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, emit: F);
}

/// The error for a known property on a packet that cannot carry it.
pub(crate) fn not_allowed() -> DecodeError {
    DecodeError::Protocol("property not allowed on this packet")
}

/// Stores a single-valued property, refusing a second copy.
pub(crate) fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("property appears more than once"));
    }
    *slot = Some(value);
    Ok(())
}

/// Reads a property length and the block it announces into `P`.
pub(crate) fn read_properties<P: PropertySet>(reader: &mut Reader) -> Result<P, DecodeError> {
    let len = reader.read_variable_byte_integer()? as usize;
    if len > reader.remaining() {
        return Err(DecodeError::Malformed("property length runs past the end of the packet"));
    }
    let mut block = reader.split(len)?;
    let mut set = P::default();
    while !block.is_empty() {
        set.apply(read_property(&mut block)?)?;
    }
    Ok(set)
}

fn read_flag(reader: &mut Reader, error: &'static str) -> Result<bool, DecodeError> {
    match reader.read_u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Protocol(error)),
    }
}

fn read_nonzero_u16(reader: &mut Reader, error: &'static str) -> Result<u16, DecodeError> {
    match reader.read_u16()? {
        0 => Err(DecodeError::Protocol(error)),
        value => Ok(value),
    }
}

/// Reads one property: its identifier, then a value of the identifier's type.
pub(crate) fn read_property(reader: &mut Reader) -> Result<Property, DecodeError> {
    // The identifier is a Variable Byte Integer, but every identifier defined
    // is one byte below 0x80, so a byte with the top bit set is unknown.
    let identifier = reader.read_u8()?;
    let property = match identifier {
        id::PAYLOAD_FORMAT_INDICATOR => match reader.read_u8()? {
            value @ (0 | 1) => Property::PayloadFormatIndicator(value),
            _ => return Err(DecodeError::Protocol("payload format indicator above 1")),
        },
        id::MESSAGE_EXPIRY_INTERVAL => Property::MessageExpiryInterval(reader.read_u32()?),
        id::CONTENT_TYPE => Property::ContentType(reader.read_string()?),
        id::RESPONSE_TOPIC => Property::ResponseTopic(reader.read_string()?),
        id::CORRELATION_DATA => Property::CorrelationData(reader.read_binary()?),
        id::SUBSCRIPTION_IDENTIFIER => match reader.read_variable_byte_integer()? {
            0 => return Err(DecodeError::Protocol("subscription identifier 0")),
            value => Property::SubscriptionIdentifier(value),
        },
        id::SESSION_EXPIRY_INTERVAL => Property::SessionExpiryInterval(reader.read_u32()?),
        id::ASSIGNED_CLIENT_IDENTIFIER => Property::AssignedClientIdentifier(reader.read_string()?),
        id::SERVER_KEEP_ALIVE => Property::ServerKeepAlive(reader.read_u16()?),
        id::AUTHENTICATION_METHOD => Property::AuthenticationMethod(reader.read_string()?),
        id::AUTHENTICATION_DATA => Property::AuthenticationData(reader.read_binary()?),
        id::REQUEST_PROBLEM_INFORMATION => {
            Property::RequestProblemInformation(read_flag(reader, "request problem information above 1")?)
        }
        id::WILL_DELAY_INTERVAL => Property::WillDelayInterval(reader.read_u32()?),
        id::REQUEST_RESPONSE_INFORMATION => {
            Property::RequestResponseInformation(read_flag(reader, "request response information above 1")?)
        }
        id::RESPONSE_INFORMATION => Property::ResponseInformation(reader.read_string()?),
        id::SERVER_REFERENCE => Property::ServerReference(reader.read_string()?),
        id::REASON_STRING => Property::ReasonString(reader.read_string()?),
        id::RECEIVE_MAXIMUM => Property::ReceiveMaximum(read_nonzero_u16(reader, "receive maximum 0")?),
        id::TOPIC_ALIAS_MAXIMUM => Property::TopicAliasMaximum(reader.read_u16()?),
        id::TOPIC_ALIAS => Property::TopicAlias(read_nonzero_u16(reader, "topic alias 0")?),
        id::MAXIMUM_QOS => match reader.read_u8()? {
            value @ (0 | 1) => Property::MaximumQos(value),
            _ => return Err(DecodeError::Protocol("maximum QoS above 1")),
        },
        id::RETAIN_AVAILABLE => Property::RetainAvailable(read_flag(reader, "retain available above 1")?),
        id::USER_PROPERTY => {
            let name = reader.read_string()?;
            let value = reader.read_string()?;
            Property::User(name, value)
        }
        id::MAXIMUM_PACKET_SIZE => match reader.read_u32()? {
            0 => return Err(DecodeError::Protocol("maximum packet size 0")),
            value => Property::MaximumPacketSize(value),
        },
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => Property::WildcardSubscriptionAvailable(read_flag(
            reader,
            "wildcard subscription available above 1",
        )?),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => Property::SubscriptionIdentifierAvailable(read_flag(
            reader,
            "subscription identifier available above 1",
        )?),
        id::SHARED_SUBSCRIPTION_AVAILABLE => {
            Property::SharedSubscriptionAvailable(read_flag(reader, "shared subscription available above 1")?)
        }
        _ => return Err(DecodeError::Malformed("unknown property identifier")),
    };
    Ok(property)
}

/// The size of the property block's content, length prefix excluded.
pub(crate) fn properties_len<P: PropertySet>(set: &P) -> usize {
    let mut len = 0;
    set.for_each(|_, value| len += 1 + value.len());
    len
}

/// The size of the property block with its length prefix.
pub(crate) fn properties_wire_len<P: PropertySet>(set: &P) -> usize {
    let len = properties_len(set);
    variable_byte_integer_len(len) + len
}

/// Writes the property length and every property of `set`.
pub(crate) fn write_properties<P: PropertySet>(set: &P, buf: &mut BytesMut) -> Result<(), EncodeError> {
    put_variable_byte_integer(buf, properties_len(set));
    let mut result = Ok(());
    set.for_each(|identifier, value| {
        if result.is_ok() {
            result = write_property(buf, identifier, value);
        }
    });
    result
}

fn write_property(buf: &mut BytesMut, identifier: u8, value: Value<'_>) -> Result<(), EncodeError> {
    buf.put_u8(identifier);
    let field = property_name(identifier);
    match value {
        Value::Byte(byte) => buf.put_u8(byte),
        Value::TwoByte(value) => buf.put_u16(value),
        Value::FourByte(value) => buf.put_u32(value),
        Value::VariableByte(value) => {
            if value == 0 || value > MAX_VARIABLE_BYTE_INTEGER {
                return Err(EncodeError::Invalid("subscription identifier outside 1..=268435455"));
            }
            put_variable_byte_integer(buf, value as usize);
        }
        Value::String(text) => put_string(buf, text, field)?,
        Value::Binary(data) => put_binary(buf, data, field)?,
        Value::Pair(name, value) => {
            put_string(buf, name, field)?;
            put_string(buf, value, field)?;
        }
    }
    Ok(())
}

/// A property's name, for error messages.
fn property_name(identifier: u8) -> &'static str {
    match identifier {
        id::CONTENT_TYPE => "content type",
        id::RESPONSE_TOPIC => "response topic",
        id::CORRELATION_DATA => "correlation data",
        id::ASSIGNED_CLIENT_IDENTIFIER => "assigned client identifier",
        id::AUTHENTICATION_METHOD => "authentication method",
        id::AUTHENTICATION_DATA => "authentication data",
        id::RESPONSE_INFORMATION => "response information",
        id::SERVER_REFERENCE => "server reference",
        id::REASON_STRING => "reason string",
        id::USER_PROPERTY => "user property",
        _ => "property",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AckProperties, ConnectProperties, PublishProperties, SubscribeProperties};

    /// Reads `block` (property length included) as the properties of `P`.
    fn read<P: PropertySet>(block: &[u8]) -> Result<P, DecodeError> {
        let mut reader = Reader::new(Bytes::copy_from_slice(block));
        let set = read_properties::<P>(&mut reader)?;
        reader.expect_end()?;
        Ok(set)
    }

    fn protocol<P: PropertySet + std::fmt::Debug>(block: &[u8]) {
        assert!(matches!(read::<P>(block), Err(DecodeError::Protocol(_))), "{block:02x?}");
    }

    #[test]
    fn unknown_identifier_is_malformed() {
        assert!(matches!(read::<PublishProperties>(&[2, 0x7F, 0]), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn property_length_past_packet_end_is_malformed() {
        assert!(matches!(read::<PublishProperties>(&[5, 0x01, 0]), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn value_past_property_block_is_malformed() {
        // Block of 3 bytes holding a 4-byte message expiry: the value must not
        // borrow bytes from beyond the block.
        assert!(matches!(read::<PublishProperties>(&[3, 0x02, 0, 0, 0]), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn property_on_wrong_packet_is_protocol_error() {
        protocol::<AckProperties>(&[2, 0x01, 0]);
    }

    #[test]
    fn duplicate_property_is_protocol_error() {
        protocol::<PublishProperties>(&[4, 0x01, 0, 0x01, 1]);
    }

    #[test]
    fn user_property_may_repeat() {
        let set = read::<AckProperties>(&[12, 0x26, 0, 1, b'a', 0, 1, b'b', 0x26, 0, 0, 0, 0]).unwrap();
        assert_eq!(
            set.user_properties,
            vec![("a".to_owned(), "b".to_owned()), (String::new(), String::new())]
        );
    }

    #[test]
    fn subscription_identifier_may_repeat_on_publish() {
        let set = read::<PublishProperties>(&[4, 0x0B, 1, 0x0B, 2]).unwrap();
        assert_eq!(set.subscription_identifiers, vec![1, 2]);
    }

    #[test]
    fn subscription_identifier_twice_on_subscribe_is_protocol_error() {
        protocol::<SubscribeProperties>(&[4, 0x0B, 1, 0x0B, 2]);
    }

    #[test]
    fn subscription_identifier_zero_is_protocol_error() {
        protocol::<SubscribeProperties>(&[2, 0x0B, 0]);
    }

    #[test]
    fn payload_format_indicator_above_one_is_protocol_error() {
        protocol::<PublishProperties>(&[2, 0x01, 2]);
    }

    #[test]
    fn topic_alias_zero_is_protocol_error() {
        protocol::<PublishProperties>(&[3, 0x23, 0, 0]);
    }

    #[test]
    fn request_problem_information_above_one_is_protocol_error() {
        protocol::<ConnectProperties>(&[2, 0x17, 2]);
    }

    #[test]
    fn request_response_information_above_one_is_protocol_error() {
        protocol::<ConnectProperties>(&[2, 0x19, 2]);
    }

    #[test]
    fn receive_maximum_zero_is_protocol_error() {
        protocol::<ConnectProperties>(&[3, 0x21, 0, 0]);
    }

    #[test]
    fn maximum_packet_size_zero_is_protocol_error() {
        protocol::<ConnectProperties>(&[5, 0x27, 0, 0, 0, 0]);
    }

    #[test]
    fn maximum_qos_above_one_is_protocol_error() {
        protocol::<crate::ConnAckProperties>(&[2, 0x24, 2]);
    }

    #[test]
    fn retain_available_above_one_is_protocol_error() {
        protocol::<crate::ConnAckProperties>(&[2, 0x25, 2]);
    }

    #[test]
    fn wildcard_subscription_available_above_one_is_protocol_error() {
        protocol::<crate::ConnAckProperties>(&[2, 0x28, 2]);
    }

    #[test]
    fn subscription_identifier_available_above_one_is_protocol_error() {
        protocol::<crate::ConnAckProperties>(&[2, 0x29, 2]);
    }

    #[test]
    fn shared_subscription_available_above_one_is_protocol_error() {
        protocol::<crate::ConnAckProperties>(&[2, 0x2A, 2]);
    }

    #[test]
    fn written_length_matches_computed_length() {
        let set = PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: Some(3),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"abc")),
            user_properties: vec![("k".into(), "v".into())],
            subscription_identifiers: vec![1, 300, 268_435_455],
            content_type: Some("text/plain".into()),
        };
        let mut buf = BytesMut::new();
        write_properties(&set, &mut buf).unwrap();
        assert_eq!(buf.len(), properties_wire_len(&set));
        assert_eq!(read::<PublishProperties>(&buf).unwrap(), set);
    }
}
