//! Sessions across connections: offline queues with their limit and policy,
//! session expiry, and shared-subscription messages that move to another
//! member when theirs leaves without acknowledging them.

mod common;

use std::time::Duration;

use common::{connect_packet, Broker, Client, VERSIONS};
use mqtt_codec::{Packet, ProtocolVersion, PubAck, QoS};

async fn persistent(port: u16, version: ProtocolVersion, id: &str, clean: bool) -> (Client, bool) {
    let mut connect = connect_packet(version, id, clean);
    connect.properties.session_expiry_interval = Some(300);
    let (client, ack) = Client::connect_with(port, connect).await;
    (client, ack.session_present)
}

async fn queued_payloads(policy: &str) -> Vec<Vec<String>> {
    let broker =
        Broker::start(&["session.max_queued_messages=3", &format!("session.queue_full_policy={policy}")]);
    let mut results = Vec::new();
    for version in VERSIONS {
        // A 3.1.1 session persists only when Clean Session is 0.
        let (mut sub, present) = persistent(broker.port, version, "offline", false).await;
        assert!(!present);
        sub.subscribe("queue/t", QoS::AtLeastOnce).await;
        sub.send(&Packet::Disconnect(Default::default())).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut publisher = Client::connect(broker.port, version, "q-pub", true).await;
        for i in 1..=5 {
            publisher.publish("queue/t", format!("m{i}").as_bytes(), QoS::AtLeastOnce, i).await;
        }
        let (mut sub, present) = persistent(broker.port, version, "offline", false).await;
        assert!(present);
        let mut got = Vec::new();
        while let Some(Packet::Publish(p)) = sub.recv_within(Duration::from_millis(300)).await {
            got.push(String::from_utf8_lossy(&p.payload).to_string());
            sub.send(&Packet::PubAck(PubAck { packet_id: p.packet_id.unwrap(), ..Default::default() })).await;
        }
        results.push(got);
        sub.send(&Packet::Disconnect(Default::default())).await;
        // Clean Start ends the session for the next round.
        let (mut cleaner, _) = persistent(broker.port, version, "offline", true).await;
        cleaner.send(&Packet::Disconnect(Default::default())).await;
        let mut disconnect = mqtt_codec::Disconnect::default();
        if version.is_v5() {
            disconnect.properties.session_expiry_interval = Some(0);
        }
        let (mut cleaner, _) = persistent(broker.port, version, "offline", true).await;
        cleaner.send(&Packet::Disconnect(disconnect)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    results
}

#[tokio::test]
async fn offline_queue_is_bounded_and_drops_the_oldest() {
    for got in queued_payloads("drop_oldest").await {
        assert_eq!(got, vec!["m3", "m4", "m5"]);
    }
}

#[tokio::test]
async fn offline_queue_can_drop_new_messages_instead() {
    for got in queued_payloads("drop_new").await {
        assert_eq!(got, vec!["m1", "m2", "m3"]);
    }
}

#[tokio::test]
async fn session_expires_after_its_interval() {
    let broker = Broker::start(&[]);
    let mut connect = connect_packet(ProtocolVersion::V5, "short", true);
    connect.properties.session_expiry_interval = Some(1);
    let (mut client, _) = Client::connect_with(broker.port, connect.clone()).await;
    client.subscribe("exp/t", QoS::AtLeastOnce).await;
    drop(client);
    connect.clean_start = false;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (client, ack) = Client::connect_with(broker.port, connect.clone()).await;
    assert!(ack.session_present, "still there before the interval ends");
    drop(client);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (_client, ack) = Client::connect_with(broker.port, connect).await;
    assert!(!ack.session_present, "gone after the interval");
}

#[tokio::test]
async fn disconnect_can_shorten_the_session_expiry() {
    let broker = Broker::start(&[]);
    let (mut client, _) = persistent(broker.port, ProtocolVersion::V5, "shorten", true).await;
    let mut disconnect = mqtt_codec::Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(0);
    client.send(&Packet::Disconnect(disconnect)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_client, present) = persistent(broker.port, ProtocolVersion::V5, "shorten", false).await;
    assert!(!present);
}

#[tokio::test]
async fn unacknowledged_shared_messages_go_to_another_member() {
    let broker = Broker::start(&["shared_subscription.strategy=sticky"]);
    for version in VERSIONS {
        let mut first = Client::connect(broker.port, version, "worker-1", true).await;
        first.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce).await;
        let mut second = Client::connect(broker.port, version, "worker-2", true).await;
        second.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce).await;
        let mut publisher = Client::connect(broker.port, version, "boss", true).await;
        publisher.publish("jobs/1", b"job", QoS::AtLeastOnce, 1).await;
        // Sticky: whoever got it keeps getting them; it does not acknowledge, then leaves.
        let (mut holder, mut other) = tokio::select! {
            Some(Packet::Publish(_)) = first.recv() => (first, second),
            Some(Packet::Publish(_)) = second.recv() => (second, first),
        };
        holder.expect_silence(Duration::from_millis(100)).await;
        drop(holder);
        let moved = other.expect_publish().await;
        assert_eq!(&moved.payload[..], b"job");
        other
            .send(&Packet::PubAck(PubAck { packet_id: moved.packet_id.unwrap(), ..Default::default() }))
            .await;
        other.expect_silence(Duration::from_millis(200)).await;
    }
}
