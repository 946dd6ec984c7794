//! CONNECT (3.1 §3.1, 3.1.1 §3.1, 5.0 §3.1): the first packet of a connection.
//!
//! CONNECT is the one packet that names its own protocol, so it is read and
//! written by `Connect::protocol`, never by the connection's version:
//! "MQIsdp" level 3 is 3.1, "MQTT" level 4 is 3.1.1, "MQTT" level 5 is 5.0,
//! and anything else is `UnsupportedProtocol` (for the CONNACK return code 1 /
//! reason 0x84). The connect flags must agree with the payload: a field is
//! present exactly when its flag says so.

use bytes::{BufMut, BytesMut};

use super::publish::check_topic_name;
use crate::primitives::{binary_len, put_binary, put_string, string_len, Reader};
use crate::properties::{properties_wire_len, read_properties, write_properties};
use crate::{Connect, ConnectProperties, DecodeError, EncodeError, ProtocolVersion, QoS, Will};

const PROTOCOL_NAME_V31: &str = "MQIsdp";
const PROTOCOL_NAME: &str = "MQTT";

/// Bits of the connect flags byte.
mod flag {
    pub(super) const RESERVED: u8 = 0x01;
    pub(super) const CLEAN_START: u8 = 0x02;
    pub(super) const WILL: u8 = 0x04;
    pub(super) const WILL_QOS_SHIFT: u8 = 3;
    pub(super) const WILL_QOS_MASK: u8 = 0x18;
    pub(super) const WILL_RETAIN: u8 = 0x20;
    pub(super) const PASSWORD: u8 = 0x40;
    pub(super) const USERNAME: u8 = 0x80;
}

fn protocol_name(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V31 => PROTOCOL_NAME_V31,
        ProtocolVersion::V311 | ProtocolVersion::V5 => PROTOCOL_NAME,
    }
}

/// Reads the body of a CONNECT.
pub(crate) fn read(body: &mut Reader) -> Result<Connect, DecodeError> {
    let name = body.read_string()?;
    let level = body.read_u8()?;
    let protocol = match (name.as_str(), level) {
        (PROTOCOL_NAME_V31, 3) => ProtocolVersion::V31,
        (PROTOCOL_NAME, 4) => ProtocolVersion::V311,
        (PROTOCOL_NAME, 5) => ProtocolVersion::V5,
        _ => return Err(DecodeError::UnsupportedProtocol { name, level }),
    };

    let flags = body.read_u8()?;
    if flags & flag::RESERVED != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag set"));
    }
    let has_will = flags & flag::WILL != 0;
    let will_qos_bits = (flags & flag::WILL_QOS_MASK) >> flag::WILL_QOS_SHIFT;
    let will_retain = flags & flag::WILL_RETAIN != 0;
    if !has_will && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain set without a will"));
    }
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::Malformed("will QoS 3"))?;
    let has_username = flags & flag::USERNAME != 0;
    let has_password = flags & flag::PASSWORD != 0;
    if has_password && !has_username && !protocol.is_v5() {
        return Err(DecodeError::Malformed("password without user name"));
    }

    let keep_alive = body.read_u16()?;
    let properties: ConnectProperties =
        if protocol.is_v5() { read_properties(body)? } else { Default::default() };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::Protocol("authentication data without authentication method"));
    }
    let client_id = body.read_string()?;
    let will = if has_will {
        let will_properties = if protocol.is_v5() { read_properties(body)? } else { Default::default() };
        let topic = body.read_string()?;
        if topic.is_empty() {
            return Err(DecodeError::Malformed("empty will topic"));
        }
        check_topic_name(&topic)?;
        let payload = body.read_binary()?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties: will_properties })
    } else {
        None
    };
    let username = if has_username { Some(body.read_string()?) } else { None };
    let password = if has_password { Some(body.read_binary()?) } else { None };

    Ok(Connect {
        protocol,
        clean_start: flags & flag::CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// The remaining length of `connect` on the wire.
pub(crate) fn remaining_len(connect: &Connect) -> usize {
    let v5 = connect.protocol.is_v5();
    // Protocol name, level, connect flags, keep alive.
    let mut len = string_len(protocol_name(connect.protocol)) + 1 + 1 + 2;
    if v5 {
        len += properties_wire_len(&connect.properties);
    }
    len += string_len(&connect.client_id);
    if let Some(will) = &connect.will {
        if v5 {
            len += properties_wire_len(&will.properties);
        }
        len += string_len(&will.topic) + binary_len(&will.payload);
    }
    if let Some(username) = &connect.username {
        len += string_len(username);
    }
    if let Some(password) = &connect.password {
        len += binary_len(password);
    }
    len
}

/// Writes the body of `connect` for its own protocol version.
pub(crate) fn write(connect: &Connect, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = connect.protocol.is_v5();
    if connect.password.is_some() && connect.username.is_none() && !v5 {
        return Err(EncodeError::Invalid("password without user name before MQTT 5.0"));
    }
    put_string(buf, protocol_name(connect.protocol), "protocol name")?;
    buf.put_u8(connect.protocol.level());

    let mut flags = 0;
    if connect.clean_start {
        flags |= flag::CLEAN_START;
    }
    if let Some(will) = &connect.will {
        flags |= flag::WILL | ((will.qos as u8) << flag::WILL_QOS_SHIFT);
        if will.retain {
            flags |= flag::WILL_RETAIN;
        }
    }
    if connect.password.is_some() {
        flags |= flag::PASSWORD;
    }
    if connect.username.is_some() {
        flags |= flag::USERNAME;
    }
    buf.put_u8(flags);
    buf.put_u16(connect.keep_alive);

    if v5 {
        write_properties(&connect.properties, buf)?;
    }
    put_string(buf, &connect.client_id, "client identifier")?;
    if let Some(will) = &connect.will {
        if v5 {
            write_properties(&will.properties, buf)?;
        }
        put_string(buf, &will.topic, "will topic")?;
        put_binary(buf, &will.payload, "will payload")?;
    }
    if let Some(username) = &connect.username {
        put_string(buf, username, "user name")?;
    }
    if let Some(password) = &connect.password {
        put_binary(buf, password, "password")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::test_support::{decode_frame, encode_bytes, round_trip};
    use crate::*;

    const V311: ProtocolVersion = ProtocolVersion::V311;

    /// A 3.1.1 CONNECT body with the given flags and payload.
    fn v311_body(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60];
        body.extend_from_slice(payload);
        body
    }

    fn decode_body(body: &[u8]) -> Result<Packet, DecodeError> {
        decode_frame(0x10, body, V311)
    }

    #[test]
    fn known_bytes_v311_connect() {
        // Clean session, will QoS 1 retained, user name and password.
        let bytes = [
            0x10,
            0x27, // CONNECT, remaining length 39
            0x00,
            0x04,
            b'M',
            b'Q',
            b'T',
            b'T',
            0x04,        // protocol name, level 4
            0b1110_1110, // user, password, will retain, will QoS 1, will, clean
            0x00,
            0x3C, // keep alive 60
            0x00,
            0x03,
            b'c',
            b'i',
            b'd', // client id
            0x00,
            0x05,
            b'w',
            b'/',
            b't',
            b'o',
            b'p', // will topic
            0x00,
            0x03,
            b'b',
            b'y',
            b'e', // will payload
            0x00,
            0x04,
            b'u',
            b's',
            b'e',
            b'r', // user name
            0x00,
            0x04,
            b'p',
            b'a',
            b's',
            b's', // password
        ];
        let expected = Packet::Connect(Box::new(Connect {
            protocol: V311,
            clean_start: true,
            keep_alive: 60,
            client_id: "cid".into(),
            will: Some(Will {
                topic: "w/top".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pass")),
            properties: ConnectProperties::default(),
        }));
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        assert_eq!(decode(&mut buf, V311, 1024), Ok(Some(expected.clone())));
        assert_eq!(encode_bytes(&expected, V311), bytes);
    }

    #[test]
    fn known_bytes_v5_connect() {
        let bytes = [
            0x10,
            0x18, // CONNECT, remaining length 24
            0x00,
            0x04,
            b'M',
            b'Q',
            b'T',
            b'T',
            0x05,        // protocol name, level 5
            0b0000_0010, // clean start
            0x00,
            0x0A, // keep alive 10
            0x08, // property length
            0x11,
            0x00,
            0x00,
            0x0E,
            0x10, // session expiry 3600
            0x21,
            0x00,
            0x14, // receive maximum 20
            0x00,
            0x03,
            b'a',
            b'b',
            b'c', // client id
        ];
        let expected = Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 10,
            client_id: "abc".into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(20),
                ..Default::default()
            },
        }));
        // The connection's version does not matter for CONNECT.
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        assert_eq!(decode(&mut buf, ProtocolVersion::V31, 1024), Ok(Some(expected.clone())));
        assert_eq!(encode_bytes(&expected, V311), bytes);
    }

    #[test]
    fn v31_connect_uses_mqisdp() {
        let connect = Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V31,
            clean_start: false,
            keep_alive: 0,
            client_id: "c".into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }));
        let bytes = encode_bytes(&connect, ProtocolVersion::V31);
        assert_eq!(&bytes[2..11], &[0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3]);
        assert_eq!(round_trip(&connect, ProtocolVersion::V31), connect);
    }

    #[test]
    fn mqtt_name_with_level_3_is_unsupported() {
        let body = [0, 4, b'M', b'Q', b'T', b'T', 3, 0x02, 0, 60, 0, 0];
        assert_eq!(
            decode_body(&body),
            Err(DecodeError::UnsupportedProtocol { name: "MQTT".into(), level: 3 })
        );
    }

    #[test]
    fn unknown_protocol_name_is_unsupported() {
        let body = [0, 4, b'M', b'Q', b'X', b'X', 4, 0x02, 0, 60, 0, 0];
        assert!(matches!(decode_body(&body), Err(DecodeError::UnsupportedProtocol { level: 4, .. })));
    }

    #[test]
    fn reserved_flag_is_malformed() {
        let body = v311_body(0x03, &[0, 0]);
        assert_eq!(decode_body(&body), Err(DecodeError::Malformed("CONNECT reserved flag set")));
    }

    #[test]
    fn will_qos_without_will_is_malformed() {
        let body = v311_body(0x08, &[0, 0]);
        assert_eq!(decode_body(&body), Err(DecodeError::Malformed("will QoS or retain set without a will")));
    }

    #[test]
    fn will_retain_without_will_is_malformed() {
        let body = v311_body(0x20, &[0, 0]);
        assert_eq!(decode_body(&body), Err(DecodeError::Malformed("will QoS or retain set without a will")));
    }

    #[test]
    fn will_qos_3_is_malformed() {
        let body = v311_body(0x1C, &[0, 0, 0, 1, b't', 0, 0]);
        assert_eq!(decode_body(&body), Err(DecodeError::Malformed("will QoS 3")));
    }

    #[test]
    fn password_without_username_is_malformed_in_v311() {
        let body = v311_body(0x40, &[0, 0, 0, 1, b'p']);
        assert_eq!(decode_body(&body), Err(DecodeError::Malformed("password without user name")));
    }

    #[test]
    fn password_without_username_is_fine_in_v5() {
        let body = [0, 4, b'M', b'Q', b'T', b'T', 5, 0x40, 0, 60, 0, 0, 0, 0, 1, b'p'];
        let Ok(Packet::Connect(connect)) = decode_body(&body) else {
            panic!("expected a CONNECT");
        };
        assert_eq!(connect.password, Some(Bytes::from_static(b"p")));
        assert_eq!(connect.username, None);
    }

    #[test]
    fn invalid_utf8_client_id_is_malformed() {
        let body = v311_body(0x02, &[0, 2, 0xC3, 0x28]);
        assert!(matches!(decode_body(&body), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn missing_username_field_is_malformed() {
        let body = v311_body(0x82, &[0, 1, b'c']);
        assert!(matches!(decode_body(&body), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn missing_will_fields_are_malformed() {
        let body = v311_body(0x06, &[0, 1, b'c']);
        assert!(matches!(decode_body(&body), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let body = v311_body(0x02, &[0, 1, b'c', 0xFF]);
        assert_eq!(decode_body(&body), Err(DecodeError::Malformed("trailing bytes after the packet")));
    }

    #[test]
    fn wildcard_will_topic_is_invalid() {
        let body = v311_body(0x06, &[0, 1, b'c', 0, 3, b'a', b'/', b'#', 0, 0]);
        assert!(matches!(decode_body(&body), Err(DecodeError::TopicNameInvalid(_))));
    }

    #[test]
    fn empty_will_topic_is_malformed() {
        let body = v311_body(0x06, &[0, 1, b'c', 0, 0, 0, 0]);
        assert_eq!(decode_body(&body), Err(DecodeError::Malformed("empty will topic")));
    }

    #[test]
    fn connect_property_on_wrong_packet_is_protocol_error() {
        // Topic Alias (0x23) is a PUBLISH property.
        let body = [0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 3, 0x23, 0, 1, 0, 0];
        assert_eq!(decode_body(&body), Err(DecodeError::Protocol("property not allowed on this packet")));
    }

    #[test]
    fn authentication_data_without_method_is_protocol_error() {
        let body = [0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 4, 0x16, 0, 1, 0xAA, 0, 0];
        assert_eq!(
            decode_body(&body),
            Err(DecodeError::Protocol("authentication data without authentication method"))
        );
    }

    #[test]
    fn encode_refuses_password_without_username_in_v311() {
        let connect = Packet::Connect(Box::new(Connect {
            protocol: V311,
            clean_start: true,
            keep_alive: 0,
            client_id: String::new(),
            will: None,
            username: None,
            password: Some(Bytes::from_static(b"p")),
            properties: ConnectProperties::default(),
        }));
        let mut buf = bytes::BytesMut::new();
        assert!(matches!(encode(&connect, V311, &mut buf), Err(EncodeError::Invalid(_))));
        assert!(buf.is_empty(), "a failed encode leaves the buffer as it was");
    }
}
