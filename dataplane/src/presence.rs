//! Client presence events, our own observer on the door's hooks:
//! `$SYS/brokers/{node}/clients/{client id}/connected` and `/disconnected`,
//! QoS 0, not retained, with a JSON payload of the fields EMQX publishes.
//!
//! A client id that cannot be one topic level (it holds `/`, `+`, `#` or
//! NUL, or is empty) gets no event: it would name another topic or none.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mqtt_codec::QoS;

use crate::cluster::access::Identity;
use crate::hooks::{ClientEvent, Interests, Observer};
use crate::message::Message;
use crate::Broker;

/// The presence observer (`sys.presence`).
#[derive(Debug)]
pub struct Presence;

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn usable(client_id: &str) -> bool {
    !client_id.is_empty() && !client_id.contains(['/', '+', '#', '\0'])
}

fn publish(broker: &Broker, client_id: &str, event: &str, payload: serde_json::Value) {
    if !usable(client_id) {
        return;
    }
    let message = Message {
        id: crate::message::next_id(),
        topic: format!("$SYS/brokers/{}/clients/{client_id}/{event}", broker.node_name),
        payload: payload.to_string().into(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        publisher: None,
        expires_at: None,
    };
    broker.publish(Arc::new(message));
}

impl Observer for Presence {
    fn interests(&self) -> Interests {
        Interests { clients: true, ..Default::default() }
    }

    fn client_connected(&self, broker: &Broker, client: &ClientEvent<'_>) {
        let who = client.identity;
        let payload = serde_json::json!({
            "clientid": &*who.client_id,
            "username": who.username.as_deref(),
            "ipaddress": who.address.to_string(),
            "proto_name": client.protocol.to_uppercase(),
            "proto_ver": client.protocol_version,
            "keepalive": client.keep_alive,
            "clean_start": client.clean_start,
            "connected_at": now_ms() as u64,
        });
        publish(broker, &who.client_id, "connected", payload);
    }

    fn client_disconnected(&self, broker: &Broker, client: &Identity, reason: &str) {
        let payload = serde_json::json!({
            "clientid": &*client.client_id,
            "username": client.username.as_deref(),
            "reason": reason,
            "disconnected_at": now_ms() as u64,
        });
        publish(broker, &client.client_id, "disconnected", payload);
    }
}
