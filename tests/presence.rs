//! Presence events, the broker's own observer on the door's hooks:
//! `$SYS/brokers/{node}/clients/{id}/connected` and `/disconnected`.

mod common;

use std::time::Duration;

use common::{connect_packet, Broker, Client, VERSIONS};
use mqtt_codec::{Packet, ProtocolVersion, QoS};

fn json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).expect("a JSON payload")
}

#[tokio::test]
async fn connected_and_disconnected_events() {
    let broker = Broker::start(&[]);
    let mut watcher = Client::connect(broker.port, ProtocolVersion::V5, "watcher", true).await;
    watcher.subscribe("$SYS/brokers/+/clients/+/+", QoS::AtMostOnce).await;
    for version in VERSIONS {
        let id = format!("device-{}", version.level());
        let mut connect = connect_packet(version, &id, true);
        connect.username = Some("ann".into());
        connect.keep_alive = 30;
        let (mut client, _) = Client::connect_with(broker.port, connect).await;
        let event = watcher.expect_publish().await;
        assert!(event.topic.ends_with(&format!("/clients/{id}/connected")), "{}", event.topic);
        assert!(!event.retain);
        let body = json(&event.payload);
        assert_eq!(body["clientid"], id.as_str());
        assert_eq!(body["username"], "ann");
        assert_eq!(body["ipaddress"], "127.0.0.1");
        assert_eq!(body["proto_ver"], version.level());
        assert_eq!(body["keepalive"], 30);
        client.send(&Packet::Disconnect(Default::default())).await;
        client.expect_close().await;
        let event = watcher.expect_publish().await;
        assert!(event.topic.ends_with(&format!("/clients/{id}/disconnected")), "{}", event.topic);
        assert_eq!(json(&event.payload)["reason"], "normal");
    }
    // A client id that is not one topic level gets no event (it would
    // name another client's topic, or none).
    let _odd = Client::connect(broker.port, ProtocolVersion::V5, "a/b", true).await;
    if let Some(packet) = watcher.recv_within(Duration::from_millis(500)).await {
        panic!("an event for client id a/b: {packet:?}");
    }
    watcher.send(&Packet::PingReq).await;
    assert!(matches!(watcher.recv().await, Some(Packet::PingResp)), "the watcher is still connected");
}

#[tokio::test]
async fn presence_can_be_turned_off() {
    let broker = Broker::start(&["sys.presence=false"]);
    let mut watcher = Client::connect(broker.port, ProtocolVersion::V5, "watcher", true).await;
    watcher.subscribe("$SYS/brokers/+/clients/#", QoS::AtMostOnce).await;
    let _client = Client::connect(broker.port, ProtocolVersion::V311, "quiet", true).await;
    if let Some(packet) = watcher.recv_within(Duration::from_millis(500)).await {
        panic!("presence is off, yet: {packet:?}");
    }
}
