//! Which properties each packet carries (spec §2.2.2.2, table of properties
//! by packet): one [`PropertySet`] impl per property struct.
//!
//! Invariant: `apply` and `for_each` of one struct name the same properties,
//! so every property that is written is read back into the same field.

use super::{id, not_allowed, set_once, Property, PropertySet, Value};
use crate::packet::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UserProperty, WillProperties,
};
use crate::DecodeError;

fn emit_user_properties<'a, F: FnMut(u8, Value<'a>)>(user_properties: &'a [UserProperty], emit: &mut F) {
    for (name, value) in user_properties {
        emit(id::USER_PROPERTY, Value::Pair(name, value));
    }
}

fn emit_string<'a, F: FnMut(u8, Value<'a>)>(emit: &mut F, identifier: u8, text: &'a Option<String>) {
    if let Some(text) = text {
        emit(identifier, Value::String(text));
    }
}

fn emit_binary<'a, F: FnMut(u8, Value<'a>)>(emit: &mut F, identifier: u8, data: &'a Option<bytes::Bytes>) {
    if let Some(data) = data {
        emit(identifier, Value::Binary(data));
    }
}

fn emit_flag<'a, F: FnMut(u8, Value<'a>)>(emit: &mut F, identifier: u8, flag: Option<bool>) {
    if let Some(flag) = flag {
        emit(identifier, Value::Byte(u8::from(flag)));
    }
}

fn emit_byte<'a, F: FnMut(u8, Value<'a>)>(emit: &mut F, identifier: u8, value: Option<u8>) {
    if let Some(value) = value {
        emit(identifier, Value::Byte(value));
    }
}

fn emit_u16<'a, F: FnMut(u8, Value<'a>)>(emit: &mut F, identifier: u8, value: Option<u16>) {
    if let Some(value) = value {
        emit(identifier, Value::TwoByte(value));
    }
}

fn emit_u32<'a, F: FnMut(u8, Value<'a>)>(emit: &mut F, identifier: u8, value: Option<u32>) {
    if let Some(value) = value {
        emit(identifier, Value::FourByte(value));
    }
}

impl PropertySet for ConnectProperties {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::SessionExpiryInterval(value) => set_once(&mut self.session_expiry_interval, value),
            Property::ReceiveMaximum(value) => set_once(&mut self.receive_maximum, value),
            Property::MaximumPacketSize(value) => set_once(&mut self.maximum_packet_size, value),
            Property::TopicAliasMaximum(value) => set_once(&mut self.topic_alias_maximum, value),
            Property::RequestResponseInformation(value) => {
                set_once(&mut self.request_response_information, value)
            }
            Property::RequestProblemInformation(value) => {
                set_once(&mut self.request_problem_information, value)
            }
            Property::User(name, value) => {
                self.user_properties.push((name, value));
                Ok(())
            }
            Property::AuthenticationMethod(value) => set_once(&mut self.authentication_method, value),
            Property::AuthenticationData(value) => set_once(&mut self.authentication_data, value),
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        emit_u32(&mut emit, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        emit_u16(&mut emit, id::RECEIVE_MAXIMUM, self.receive_maximum);
        emit_u32(&mut emit, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        emit_u16(&mut emit, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        emit_flag(&mut emit, id::REQUEST_RESPONSE_INFORMATION, self.request_response_information);
        emit_flag(&mut emit, id::REQUEST_PROBLEM_INFORMATION, self.request_problem_information);
        emit_user_properties(&self.user_properties, &mut emit);
        emit_string(&mut emit, id::AUTHENTICATION_METHOD, &self.authentication_method);
        emit_binary(&mut emit, id::AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl PropertySet for WillProperties {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::WillDelayInterval(value) => set_once(&mut self.will_delay_interval, value),
            Property::PayloadFormatIndicator(value) => set_once(&mut self.payload_format_indicator, value),
            Property::MessageExpiryInterval(value) => set_once(&mut self.message_expiry_interval, value),
            Property::ContentType(value) => set_once(&mut self.content_type, value),
            Property::ResponseTopic(value) => set_once(&mut self.response_topic, value),
            Property::CorrelationData(value) => set_once(&mut self.correlation_data, value),
            Property::User(name, value) => {
                self.user_properties.push((name, value));
                Ok(())
            }
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        emit_u32(&mut emit, id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        emit_byte(&mut emit, id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        emit_u32(&mut emit, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        emit_string(&mut emit, id::CONTENT_TYPE, &self.content_type);
        emit_string(&mut emit, id::RESPONSE_TOPIC, &self.response_topic);
        emit_binary(&mut emit, id::CORRELATION_DATA, &self.correlation_data);
        emit_user_properties(&self.user_properties, &mut emit);
    }
}

impl PropertySet for ConnAckProperties {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::SessionExpiryInterval(value) => set_once(&mut self.session_expiry_interval, value),
            Property::ReceiveMaximum(value) => set_once(&mut self.receive_maximum, value),
            Property::MaximumQos(value) => set_once(&mut self.maximum_qos, value),
            Property::RetainAvailable(value) => set_once(&mut self.retain_available, value),
            Property::MaximumPacketSize(value) => set_once(&mut self.maximum_packet_size, value),
            Property::AssignedClientIdentifier(value) => {
                set_once(&mut self.assigned_client_identifier, value)
            }
            Property::TopicAliasMaximum(value) => set_once(&mut self.topic_alias_maximum, value),
            Property::ReasonString(value) => set_once(&mut self.reason_string, value),
            Property::User(name, value) => {
                self.user_properties.push((name, value));
                Ok(())
            }
            Property::WildcardSubscriptionAvailable(value) => {
                set_once(&mut self.wildcard_subscription_available, value)
            }
            Property::SubscriptionIdentifierAvailable(value) => {
                set_once(&mut self.subscription_identifiers_available, value)
            }
            Property::SharedSubscriptionAvailable(value) => {
                set_once(&mut self.shared_subscription_available, value)
            }
            Property::ServerKeepAlive(value) => set_once(&mut self.server_keep_alive, value),
            Property::ResponseInformation(value) => set_once(&mut self.response_information, value),
            Property::ServerReference(value) => set_once(&mut self.server_reference, value),
            Property::AuthenticationMethod(value) => set_once(&mut self.authentication_method, value),
            Property::AuthenticationData(value) => set_once(&mut self.authentication_data, value),
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        emit_u32(&mut emit, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        emit_u16(&mut emit, id::RECEIVE_MAXIMUM, self.receive_maximum);
        emit_byte(&mut emit, id::MAXIMUM_QOS, self.maximum_qos);
        emit_flag(&mut emit, id::RETAIN_AVAILABLE, self.retain_available);
        emit_u32(&mut emit, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        emit_string(&mut emit, id::ASSIGNED_CLIENT_IDENTIFIER, &self.assigned_client_identifier);
        emit_u16(&mut emit, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        emit_string(&mut emit, id::REASON_STRING, &self.reason_string);
        emit_user_properties(&self.user_properties, &mut emit);
        emit_flag(&mut emit, id::WILDCARD_SUBSCRIPTION_AVAILABLE, self.wildcard_subscription_available);
        emit_flag(&mut emit, id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, self.subscription_identifiers_available);
        emit_flag(&mut emit, id::SHARED_SUBSCRIPTION_AVAILABLE, self.shared_subscription_available);
        emit_u16(&mut emit, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        emit_string(&mut emit, id::RESPONSE_INFORMATION, &self.response_information);
        emit_string(&mut emit, id::SERVER_REFERENCE, &self.server_reference);
        emit_string(&mut emit, id::AUTHENTICATION_METHOD, &self.authentication_method);
        emit_binary(&mut emit, id::AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl PropertySet for PublishProperties {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::PayloadFormatIndicator(value) => set_once(&mut self.payload_format_indicator, value),
            Property::MessageExpiryInterval(value) => set_once(&mut self.message_expiry_interval, value),
            Property::TopicAlias(value) => set_once(&mut self.topic_alias, value),
            Property::ResponseTopic(value) => set_once(&mut self.response_topic, value),
            Property::CorrelationData(value) => set_once(&mut self.correlation_data, value),
            Property::User(name, value) => {
                self.user_properties.push((name, value));
                Ok(())
            }
            // A message that matched several subscriptions carries one
            // identifier per subscription, so this one may repeat.
            Property::SubscriptionIdentifier(value) => {
                self.subscription_identifiers.push(value);
                Ok(())
            }
            Property::ContentType(value) => set_once(&mut self.content_type, value),
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        emit_byte(&mut emit, id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        emit_u32(&mut emit, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        emit_u16(&mut emit, id::TOPIC_ALIAS, self.topic_alias);
        emit_string(&mut emit, id::RESPONSE_TOPIC, &self.response_topic);
        emit_binary(&mut emit, id::CORRELATION_DATA, &self.correlation_data);
        emit_user_properties(&self.user_properties, &mut emit);
        for &identifier in &self.subscription_identifiers {
            emit(id::SUBSCRIPTION_IDENTIFIER, Value::VariableByte(identifier));
        }
        emit_string(&mut emit, id::CONTENT_TYPE, &self.content_type);
    }
}

impl PropertySet for AckProperties {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::ReasonString(value) => set_once(&mut self.reason_string, value),
            Property::User(name, value) => {
                self.user_properties.push((name, value));
                Ok(())
            }
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        emit_string(&mut emit, id::REASON_STRING, &self.reason_string);
        emit_user_properties(&self.user_properties, &mut emit);
    }
}

impl PropertySet for SubscribeProperties {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::SubscriptionIdentifier(value) => set_once(&mut self.subscription_identifier, value),
            Property::User(name, value) => {
                self.user_properties.push((name, value));
                Ok(())
            }
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        if let Some(identifier) = self.subscription_identifier {
            emit(id::SUBSCRIPTION_IDENTIFIER, Value::VariableByte(identifier));
        }
        emit_user_properties(&self.user_properties, &mut emit);
    }
}

/// UNSUBSCRIBE carries only user properties, kept as a bare list.
impl PropertySet for Vec<UserProperty> {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::User(name, value) => {
                self.push((name, value));
                Ok(())
            }
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        emit_user_properties(self, &mut emit);
    }
}

impl PropertySet for DisconnectProperties {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::SessionExpiryInterval(value) => set_once(&mut self.session_expiry_interval, value),
            Property::ReasonString(value) => set_once(&mut self.reason_string, value),
            Property::User(name, value) => {
                self.user_properties.push((name, value));
                Ok(())
            }
            Property::ServerReference(value) => set_once(&mut self.server_reference, value),
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        emit_u32(&mut emit, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        emit_string(&mut emit, id::REASON_STRING, &self.reason_string);
        emit_user_properties(&self.user_properties, &mut emit);
        emit_string(&mut emit, id::SERVER_REFERENCE, &self.server_reference);
    }
}

impl PropertySet for AuthProperties {
    fn apply(&mut self, property: Property) -> Result<(), DecodeError> {
        match property {
            Property::AuthenticationMethod(value) => set_once(&mut self.authentication_method, value),
            Property::AuthenticationData(value) => set_once(&mut self.authentication_data, value),
            Property::ReasonString(value) => set_once(&mut self.reason_string, value),
            Property::User(name, value) => {
                self.user_properties.push((name, value));
                Ok(())
            }
            _ => Err(not_allowed()),
        }
    }

    fn for_each<'a, F: FnMut(u8, Value<'a>)>(&'a self, mut emit: F) {
        emit_string(&mut emit, id::AUTHENTICATION_METHOD, &self.authentication_method);
        emit_binary(&mut emit, id::AUTHENTICATION_DATA, &self.authentication_data);
        emit_string(&mut emit, id::REASON_STRING, &self.reason_string);
        emit_user_properties(&self.user_properties, &mut emit);
    }
}
