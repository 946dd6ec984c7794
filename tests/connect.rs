//! CONNECT and CONNACK: server limits announced to 5.0 clients, assigned
//! client identifiers, session takeover, keep-alive, anonymous policy and
//! graceful shutdown.

mod common;

use std::time::Duration;

use common::{connect_packet, Broker, Client, VERSIONS};
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

#[tokio::test]
async fn v5_connack_announces_the_server_limits() {
    let broker = Broker::start(&[
        "mqtt.receive_maximum=10",
        "mqtt.max_packet_size=4096",
        "mqtt.topic_alias_maximum=5",
        "mqtt.max_qos=1",
        "mqtt.max_keep_alive=30",
        "mqtt.shared_subscription_available=false",
    ]);
    let mut connect = connect_packet(ProtocolVersion::V5, "", true);
    connect.keep_alive = 120;
    let (_client, ack) = Client::connect_with(broker.port, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let p = &ack.properties;
    assert_eq!(p.receive_maximum, Some(10));
    assert_eq!(p.maximum_packet_size, Some(4096));
    assert_eq!(p.topic_alias_maximum, Some(5));
    assert_eq!(p.maximum_qos, Some(1));
    assert_eq!(p.server_keep_alive, Some(30));
    assert_eq!(p.retain_available, Some(true));
    assert_eq!(p.wildcard_subscription_available, Some(true));
    assert_eq!(p.shared_subscription_available, Some(false));
    assert_eq!(p.subscription_identifiers_available, Some(true));
    let assigned = p.assigned_client_identifier.clone().expect("assigned client id");
    assert!(!assigned.is_empty());
}

#[tokio::test]
async fn empty_client_id_rules_per_version() {
    let broker = Broker::start(&[]);
    // 3.1.1: allowed with Clean Session only (MQTT-3.1.3-7, -8).
    let (_ok, ack) = Client::connect_with(broker.port, connect_packet(ProtocolVersion::V311, "", true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let (_no, ack) =
        Client::connect_with(broker.port, connect_packet(ProtocolVersion::V311, "", false)).await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    // 5.0: always allowed, and the id is assigned.
    let (_v5, ack) = Client::connect_with(broker.port, connect_packet(ProtocolVersion::V5, "", false)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.properties.assigned_client_identifier.is_some());
}

#[tokio::test]
async fn a_second_connection_takes_over_the_session() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut first = Client::connect(broker.port, version, "dup", false).await;
        first.subscribe("takeover/t", QoS::AtLeastOnce).await;
        let (mut second, ack) =
            Client::connect_with(broker.port, connect_packet(version, "dup", false)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        assert!(ack.session_present, "the session moved to the new connection");
        first.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
        // The subscription came along.
        let mut publisher = Client::connect(broker.port, version, "pub", true).await;
        publisher.publish("takeover/t", b"x", QoS::AtLeastOnce, 1).await;
        let message = second.expect_publish().await;
        second
            .send(&Packet::PubAck(mqtt_codec::PubAck {
                packet_id: message.packet_id.unwrap(),
                ..Default::default()
            }))
            .await;
        assert_eq!(&message.payload[..], b"x");
        second.send(&Packet::Disconnect(Default::default())).await;
        let (_third, _) = Client::connect_with(broker.port, connect_packet(version, "dup", true)).await;
    }
}

#[tokio::test]
async fn keep_alive_timeout_closes_the_connection() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut connect = connect_packet(version, "sleepy", true);
        connect.keep_alive = 1;
        let (mut client, _) = Client::connect_with(broker.port, connect).await;
        let started = std::time::Instant::now();
        client.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
        let waited = started.elapsed();
        // MQTT-3.1.2-24: one and a half times the keep-alive, and not much more.
        assert!(waited >= Duration::from_millis(1400), "closed too early: {waited:?}");
        assert!(waited <= Duration::from_millis(2500), "closed too late: {waited:?}");
    }
    // A client that pings stays connected.
    let mut connect = connect_packet(ProtocolVersion::V311, "awake", true);
    connect.keep_alive = 1;
    let (mut client, _) = Client::connect_with(broker.port, connect).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        client.send(&Packet::PingReq).await;
        assert_eq!(client.recv().await, Some(Packet::PingResp));
    }
}

#[tokio::test]
async fn server_keep_alive_is_enforced() {
    let broker = Broker::start(&["mqtt.max_keep_alive=1"]);
    let mut connect = connect_packet(ProtocolVersion::V5, "capped", true);
    connect.keep_alive = 0;
    let (mut client, ack) = Client::connect_with(broker.port, connect).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    let started = std::time::Instant::now();
    client.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "closed too early: {waited:?}");
    assert!(waited <= Duration::from_millis(2500), "closed too late: {waited:?}");
}

#[tokio::test]
async fn anonymous_access_can_be_refused() {
    let broker = Broker::start(&["auth.allow_anonymous=deny"]);
    let (_c, ack) =
        Client::connect_with(broker.port, connect_packet(ProtocolVersion::V5, "anon", true)).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    let (_c, ack) =
        Client::connect_with(broker.port, connect_packet(ProtocolVersion::V311, "anon", true)).await;
    // 3.1.1 return code 5, "not authorized".
    assert_eq!(ack.reason.to_v3_connack(), 5);
}

#[tokio::test]
async fn sigterm_sends_server_shutting_down_and_exits_cleanly() {
    let mut broker = Broker::start(&[]);
    let mut v5 = Client::connect(broker.port, ProtocolVersion::V5, "v5", true).await;
    let mut v3 = Client::connect(broker.port, ProtocolVersion::V311, "v3", true).await;
    let status = broker.terminate();
    assert!(status.success(), "exit status {status:?}");
    v5.expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN).await;
    v3.expect_close().await;
}

#[tokio::test]
async fn rumqttc_round_trip() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet as RPacket, QoS as RQoS};
    let broker = Broker::start(&[]);
    let mut options = MqttOptions::new("rumqttc", "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe("rust/#", RQoS::AtLeastOnce).await.unwrap();
    client.publish("rust/hello", RQoS::AtLeastOnce, false, "from rumqttc").await.unwrap();
    let received = tokio::time::timeout(common::WAIT, async {
        loop {
            if let Ok(Event::Incoming(RPacket::Publish(p))) = eventloop.poll().await {
                return p;
            }
        }
    })
    .await
    .expect("message in time");
    assert_eq!(received.topic, "rust/hello");
    assert_eq!(&received.payload[..], b"from rumqttc");
}

/// Regression: a client reconnecting right after DISCONNECT, while the old
/// connection is still closing, must get its CONNACK at once (it used to
/// wait out the takeover timeout).
#[tokio::test]
async fn reconnect_right_after_disconnect_is_prompt() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        for round in 0..20 {
            let started = std::time::Instant::now();
            let (mut client, ack) =
                Client::connect_with(broker.port, connect_packet(version, "quick", round % 2 == 0)).await;
            assert_eq!(ack.reason, ReasonCode::SUCCESS);
            assert!(started.elapsed() < Duration::from_secs(1), "CONNACK took {:?}", started.elapsed());
            client.send(&Packet::Disconnect(Default::default())).await;
        }
    }
}

/// `node.worker_threads` sets the runtime's worker threads (0: one per core).
#[test]
fn worker_threads_are_configurable() {
    use std::io::{BufRead, BufReader};
    for (setting, expected) in
        [("1", 1), ("3", 3), ("0", std::thread::available_parallelism().unwrap().get())]
    {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(["--set", &format!("node.worker_threads={setting}"), "--set", "log.format=json"])
            .args(["--set", "listeners.tcp.bind=127.0.0.1:0", "--set", "listeners.ws.enabled=false"])
            .args(["--set", "controlplane.bind=127.0.0.1:0"])
            .args(["--set", &format!("node.data_dir={}", dir.path().display())])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut found = None;
        for line in BufReader::new(child.stderr.take().unwrap()).lines().take(50) {
            let line = line.unwrap();
            if line.contains("runtime started") {
                let event: serde_json::Value = serde_json::from_str(&line).unwrap();
                found = event["fields"]["worker_threads"].as_u64();
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(expected as u64), "node.worker_threads={setting}");
    }
}
