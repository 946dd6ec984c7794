//! Access control tried as an attacker would: one test per known way
//! around it (issue 8), each through a real standalone `mqttd`, provisioned
//! with `mqttctl`, for MQTT 3.1.1 and 5.0.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{connect_packet, eventually, free_ports, mqttctl, Broker, Client, VERSIONS};
use mqtt_codec::{
    Connect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, Will,
};

/// Like `eventually`, for a probe that borrows a client mutably.
macro_rules! until {
    ($what:expr, $probe:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(10);
        while !$probe {
            assert!(Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

/// Subscribes to one filter; returns the SUBACK's reason code.
async fn suback(client: &mut Client, filter: &str) -> ReasonCode {
    let options = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    let subscribe =
        Subscribe { packet_id: 7, filters: vec![(filter.to_string(), options)], ..Default::default() };
    client.send(&Packet::Subscribe(subscribe)).await;
    match client.recv().await {
        Some(Packet::SubAck(ack)) => ack.reasons[0],
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn refused(reason: ReasonCode) -> bool {
    reason.0 >= 0x80
}

/// Asserts that nothing arrives for a moment and that the connection is
/// still open (a PINGREQ is answered), so silence is not a closed socket.
async fn quiet(client: &mut Client) {
    if let Some(packet) = client.recv_within(Duration::from_millis(600)).await {
        panic!("expected nothing, got {packet:?}");
    }
    client.send(&Packet::PingReq).await;
    match client.recv().await {
        Some(Packet::PingResp) => {}
        other => panic!("expected PINGRESP from a live connection, got {other:?}"),
    }
}

async fn connect_as(
    port: u16,
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
) -> (Client, ReasonCode) {
    let mut connect = connect_packet(version, id, true);
    connect.username = user.map(str::to_string);
    let (client, ack) = Client::connect_with(port, connect).await;
    (client, ack.reason)
}

#[tokio::test]
async fn wildcard_subscription_passes_a_deny_rule() {
    let (broker, grpc) = Broker::start_with_grpc(&[]);
    let port = broker.port;
    mqttctl(
        &broker,
        &grpc,
        &["acl", "add", "--deny", "--action", "subscribe", "--topic", "secret/#", "--all"],
    );
    let mut probe = Client::connect(port, ProtocolVersion::V5, "probe", true).await;
    until!("the deny rule", refused(suback(&mut probe, "secret/x").await));
    let mut publisher = Client::connect(port, ProtocolVersion::V5, "pub", true).await;
    for version in VERSIONS {
        let mut eve = Client::connect(port, version, "eve", true).await;
        for filter in ["#", "secret/+", "+/x", "+/#", "$share/g/#", "$queue/secret/#"] {
            assert!(refused(suback(&mut eve, filter).await), "{version:?}: {filter} must be refused");
        }
        assert!(!refused(suback(&mut eve, "public/+").await), "{version:?}: public/+ is allowed");
        publisher.publish("secret/x", b"classified", QoS::AtLeastOnce, 1).await;
        quiet(&mut eve).await;
    }
}

#[tokio::test]
async fn allow_rule_widened_by_a_multi_level_wildcard() {
    let (broker, grpc) = Broker::start_with_grpc(&["auth.acl_no_match=deny"]);
    let port = broker.port;
    mqttctl(
        &broker,
        &grpc,
        &["acl", "add", "--allow", "--action", "subscribe", "--topic", "sensors/+", "--all"],
    );
    for version in VERSIONS {
        let mut eve = Client::connect(port, version, "eve", true).await;
        until!("the allow rule", !refused(suback(&mut eve, "sensors/+").await));
        for filter in ["sensors/#", "#", "+/+", "sensors/+/x"] {
            assert!(refused(suback(&mut eve, filter).await), "{version:?}: {filter} must be refused");
        }
    }
}

#[tokio::test]
async fn placeholder_filled_with_wildcards() {
    let (broker, grpc) = Broker::start_with_grpc(&["auth.acl_no_match=deny"]);
    let port = broker.port;
    mqttctl(
        &broker,
        &grpc,
        &["acl", "add", "--allow", "--action", "all", "--topic", "clients/%c/#", "--all"],
    );
    mqttctl(&broker, &grpc, &["acl", "add", "--allow", "--action", "all", "--topic", "home/%u/#", "--all"]);
    for version in VERSIONS {
        let mut fair = Client::connect(port, version, "c1", true).await;
        until!("the placeholder rules", !refused(suback(&mut fair, "clients/c1/#").await));
        // The client id is a level, never a wildcard.
        let mut hash = Client::connect(port, version, "#", true).await;
        assert!(refused(suback(&mut hash, "clients/#").await), "{version:?}: client id # widened the rule");
        let mut plus = Client::connect(port, version, "+", true).await;
        assert!(refused(suback(&mut plus, "clients/+/x").await), "{version:?}: client id + widened the rule");
        // Usernames too (no users exist, so any username connects on loopback).
        let (mut user, reason) = connect_as(port, version, "u1", Some("+")).await;
        assert_eq!(reason, ReasonCode::SUCCESS);
        assert!(refused(suback(&mut user, "home/+/#").await), "{version:?}: username + widened the rule");
        let (mut slash, _) = connect_as(port, version, "u2", Some("a/b")).await;
        assert!(
            refused(suback(&mut slash, "home/a/b/#").await),
            "{version:?}: username a/b spans two levels"
        );
        let (mut empty, _) = connect_as(port, version, "u3", Some("")).await;
        assert!(refused(suback(&mut empty, "home//#").await), "{version:?}: an empty username is no home");
    }
}

fn with_will(version: ProtocolVersion, id: &str, topic: &str, retain: bool) -> Connect {
    let mut connect = connect_packet(version, id, true);
    connect.will = Some(Will {
        topic: topic.into(),
        payload: "last words".into(),
        qos: QoS::AtLeastOnce,
        retain,
        properties: Default::default(),
    });
    connect
}

#[tokio::test]
async fn will_skips_the_publish_acl_and_the_sys_guard() {
    let (broker, grpc) = Broker::start_with_grpc(&[]);
    let port = broker.port;
    mqttctl(
        &broker,
        &grpc,
        &["acl", "add", "--deny", "--action", "publish", "--topic", "readonly/#", "--all"],
    );
    let mut probe = Client::connect(port, ProtocolVersion::V5, "probe", true).await;
    until!(
        "the deny rule",
        probe.publish_reason("readonly/x", b"probe", 3).await == ReasonCode::NOT_AUTHORIZED
    );
    let mut watcher = Client::connect(port, ProtocolVersion::V5, "watcher", true).await;
    watcher.subscribe("readonly/#", QoS::AtLeastOnce).await;
    watcher.subscribe("$SYS/brokers/forged/#", QoS::AtLeastOnce).await;
    for version in VERSIONS {
        for (topic, retain) in [("readonly/x", false), ("$SYS/brokers/forged/uptime", true)] {
            let (mut client, ack) = Client::connect_with(port, with_will(version, "w", topic, retain)).await;
            assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED, "{version:?}: will on {topic} accepted");
            client.expect_close().await;
        }
    }
    quiet(&mut watcher).await;
    // Nothing was retained either: a new subscriber gets nothing.
    let mut late = Client::connect(port, ProtocolVersion::V5, "late", true).await;
    late.subscribe("$SYS/brokers/forged/#", QoS::AtLeastOnce).await;
    quiet(&mut late).await;
}

#[tokio::test]
async fn will_authorized_again_when_it_is_sent() {
    let (broker, grpc) = Broker::start_with_grpc(&[]);
    let port = broker.port;
    let mut watcher = Client::connect(port, ProtocolVersion::V5, "watcher", true).await;
    watcher.subscribe("later/#", QoS::AtLeastOnce).await;
    let mut wills = Vec::new();
    for (n, version) in VERSIONS.into_iter().enumerate() {
        let (client, ack) =
            Client::connect_with(port, with_will(version, &format!("w{n}"), "later/w", false)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        wills.push(client);
    }
    // The rule changes while they are connected.
    mqttctl(&broker, &grpc, &["acl", "add", "--deny", "--action", "publish", "--topic", "later/#", "--all"]);
    let mut probe = Client::connect(port, ProtocolVersion::V5, "probe", true).await;
    until!("the deny rule", probe.publish_reason("later/p", b"probe", 3).await == ReasonCode::NOT_AUTHORIZED);
    drop(wills); // sockets drop without DISCONNECT: the wills are due
    quiet(&mut watcher).await;
}

#[tokio::test]
async fn another_user_resumes_a_session_by_client_id() {
    let (broker, grpc) = Broker::start_with_grpc(&[]);
    let port = broker.port;
    mqttctl(&broker, &grpc, &["users", "add", "alice", "--password", "a"]);
    mqttctl(&broker, &grpc, &["users", "add", "bob", "--password", "b"]);
    mqttctl(&broker, &grpc, &["users", "add", "root", "--password", "r", "--superuser"]);
    let login = |version: ProtocolVersion, id: &str, user: &str, password: &str, clean: bool| {
        let mut connect = connect_packet(version, id, clean);
        connect.username = Some(user.into());
        connect.password = Some(password.as_bytes().to_vec().into());
        connect.properties.session_expiry_interval = Some(300);
        connect
    };
    eventually("the users", || async move {
        Client::connect_with(port, login(ProtocolVersion::V5, "x", "root", "r", true))
            .await
            .1
            .reason
            .is_success()
    })
    .await;
    let (mut root, _) =
        Client::connect_with(port, login(ProtocolVersion::V5, "root", "root", "r", true)).await;
    for version in VERSIONS {
        let id = format!("device-{version:?}");
        let (mut alice, ack) = Client::connect_with(port, login(version, &id, "alice", "a", false)).await;
        assert!(ack.reason.is_success());
        alice.subscribe("inbox/#", QoS::AtLeastOnce).await;
        alice.send(&Packet::Disconnect(Default::default())).await;
        alice.expect_close().await;
        root.publish("inbox/alice", b"for alice only", QoS::AtLeastOnce, 1).await;

        let (mut bob, ack) = Client::connect_with(port, login(version, &id, "bob", "b", false)).await;
        assert!(ack.reason.is_success());
        assert!(!ack.session_present, "{version:?}: bob was handed alice's session");
        quiet(&mut bob).await;
        // And bob is not subscribed to alice's filters.
        root.publish("inbox/alice", b"again", QoS::AtLeastOnce, 2).await;
        quiet(&mut bob).await;
    }
}

#[tokio::test]
async fn data_plane_serves_before_its_first_view() {
    let [port, dead_controlplane, peer] = free_ports();
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_mqttd"))
        .arg("dataplane")
        .args(["--set", "node.id=7"])
        .args(["--set", "dataplane.token=not-known-anywhere"])
        .args(["--set", &format!("dataplane.controlplane=http://127.0.0.1:{dead_controlplane}")])
        .args(["--set", &format!("dataplane.peer_bind=127.0.0.1:{peer}")])
        .args(["--set", &format!("listeners.tcp.bind=127.0.0.1:{port}")])
        .args(["--set", "listeners.ws.enabled=false"])
        .args(["--set", &format!("node.data_dir={}", dir.path().display())])
        .args(["--set", "sys.interval=0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mqttd dataplane");
    // Killed even when an assertion fails.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the data plane did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for version in VERSIONS {
        let (_client, ack) = Client::connect_with(port, connect_packet(version, "early", true)).await;
        assert_eq!(
            ack.reason,
            ReasonCode::SERVER_UNAVAILABLE,
            "{version:?}: served without users, bans or rules"
        );
    }
}

#[tokio::test]
async fn ipv4_mapped_address_misses_an_ipv4_ban() {
    let [port, ws, grpc] = free_ports();
    let settings = [
        format!("listeners.tcp.bind=[::ffff:127.0.0.1]:{port}"),
        format!("controlplane.bind=127.0.0.1:{grpc}"),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let broker = Broker::start_on(port, ws, &settings);
    let grpc = format!("http://127.0.0.1:{grpc}");
    mqttctl(&broker, &grpc, &["banned", "add", "--ipaddr", "127.0.0.1"]);
    for version in VERSIONS {
        // 3.1.1 has no "banned": return code 5, not authorized.
        let banned = if version.is_v5() { ReasonCode::BANNED } else { ReasonCode::NOT_AUTHORIZED };
        eventually("the ban on 127.0.0.1", || async move {
            Client::connect_with(port, connect_packet(version, "mapped", true)).await.1.reason == banned
        })
        .await;
    }
}

#[tokio::test]
async fn access_fixed_at_connect() {
    let (broker, grpc) = Broker::start_with_grpc(&[]);
    let port = broker.port;
    for (user, password) in [("alice", "a"), ("carol", "c"), ("dave", "d"), ("erin", "e")] {
        mqttctl(&broker, &grpc, &["users", "add", user, "--password", password]);
    }
    mqttctl(&broker, &grpc, &["users", "add", "root", "--password", "r", "--superuser"]);
    let login = |version: ProtocolVersion, user: &str, password: &str| {
        let mut connect = connect_packet(version, &format!("{user}-{version:?}"), true);
        connect.username = Some(user.into());
        connect.password = Some(password.as_bytes().to_vec().into());
        connect
    };
    eventually("the users", || async move {
        Client::connect_with(port, login(ProtocolVersion::V5, "erin", "e")).await.1.reason.is_success()
    })
    .await;
    let (mut root, _) = Client::connect_with(port, login(ProtocolVersion::V5, "root", "r")).await;
    let mut clients = Vec::new();
    for version in VERSIONS {
        let mut by_user = Vec::new();
        for (user, password) in [("alice", "a"), ("carol", "c"), ("dave", "d"), ("erin", "e")] {
            let (mut client, ack) = Client::connect_with(port, login(version, user, password)).await;
            assert!(ack.reason.is_success(), "{user}: {ack:?}");
            client.subscribe("news/#", QoS::AtLeastOnce).await;
            by_user.push(client);
        }
        clients.push(by_user);
    }
    // A new rule denies part of what news/# can match: the subscription stops.
    mqttctl(
        &broker,
        &grpc,
        &["acl", "add", "--deny", "--action", "subscribe", "--topic", "news/secret/#", "--all"],
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    root.publish("news/secret/plans", b"not for you", QoS::AtLeastOnce, 1).await;
    for by_user in &mut clients {
        quiet(&mut by_user[3]).await;
    }
    // A changed password, a ban and a deleted user end live connections.
    mqttctl(&broker, &grpc, &["users", "passwd", "alice", "--password", "new"]);
    mqttctl(&broker, &grpc, &["banned", "add", "--username", "carol"]);
    mqttctl(&broker, &grpc, &["users", "del", "dave"]);
    for (version, by_user) in VERSIONS.into_iter().zip(&mut clients) {
        by_user[0].expect_disconnect(ReasonCode::NOT_AUTHORIZED).await;
        by_user[1].expect_disconnect(ReasonCode::ADMINISTRATIVE_ACTION).await;
        by_user[2].expect_disconnect(ReasonCode::NOT_AUTHORIZED).await;
        // Erin is untouched.
        quiet(&mut by_user[3]).await;
        let _ = version;
    }
}

#[tokio::test]
async fn subscriber_that_stops_reading_holds_its_buffers_forever() {
    let broker = Broker::start(&["mqtt.write_timeout_ms=500"]);
    let mut stalled = Client::connect(broker.port, ProtocolVersion::V5, "stalled", true).await;
    stalled.subscribe("flood", QoS::AtMostOnce).await;
    let mut publisher = Client::connect(broker.port, ProtocolVersion::V5, "pub", true).await;
    let payload = vec![b'x'; 512 * 1024];
    // 64 MiB: far more than the socket buffers between them hold.
    for _ in 0..128 {
        publisher.publish("flood", &payload, QoS::AtMostOnce, 0).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The stalled client now reads: what was buffered, then the end.
    stalled.expect_close().await;
}

#[tokio::test]
async fn topic_alias_stored_before_the_acl() {
    let (broker, grpc) = Broker::start_with_grpc(&[]);
    let port = broker.port;
    mqttctl(&broker, &grpc, &["acl", "add", "--deny", "--action", "publish", "--topic", "secret/#", "--all"]);
    let mut probe = Client::connect(port, ProtocolVersion::V5, "probe", true).await;
    until!(
        "the deny rule",
        probe.publish_reason("secret/x", b"probe", 3).await == ReasonCode::NOT_AUTHORIZED
    );
    let aliased = |topic: &str, packet_id: u16| {
        let mut publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: Some(packet_id),
            payload: "x".into(),
            ..Default::default()
        };
        publish.properties.topic_alias = Some(1);
        Packet::Publish(publish)
    };
    let mut client = Client::connect(port, ProtocolVersion::V5, "aliases", true).await;
    client.send(&aliased("secret/x", 1)).await;
    match client.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // The refused topic never became alias 1: using it is a protocol error.
    client.send(&aliased("", 2)).await;
    client.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;

    // Allowed topics fill a byte budget (64 KiB by default), then 0x97.
    let mut hoarder = Client::connect(port, ProtocolVersion::V5, "hoarder", true).await;
    let mut closed = false;
    for alias in 1..=100u16 {
        let mut publish =
            Publish { topic: format!("big/{alias}/{}", "t".repeat(1024)), ..Default::default() };
        publish.properties.topic_alias = Some(alias);
        hoarder.send(&Packet::Publish(publish)).await;
        if alias == 100 {
            hoarder.expect_disconnect(ReasonCode::QUOTA_EXCEEDED).await;
            closed = true;
        }
    }
    assert!(closed);
}

#[tokio::test]
async fn subscriptions_filters_and_levels_unbounded() {
    let broker = Broker::start(&["mqtt.max_subscriptions=5"]);
    for version in VERSIONS {
        let mut client = Client::connect(broker.port, version, "many", true).await;
        for n in 0..5 {
            assert!(!refused(suback(&mut client, &format!("f/{n}")).await));
        }
        assert!(refused(suback(&mut client, "f/5").await), "{version:?}: a sixth subscription");
        assert!(!refused(suback(&mut client, "f/0").await), "{version:?}: re-subscribing is not a new one");
        let deep = vec!["l"; 129].join("/");
        assert!(refused(suback(&mut client, &deep).await), "{version:?}: 129 levels");
        let long = format!("x/{}", "y".repeat(5000));
        assert!(refused(suback(&mut client, &long).await), "{version:?}: a 5 KB filter");
    }
}

#[tokio::test]
async fn connections_per_listener_unbounded() {
    let broker = Broker::start(&["listeners.tcp.max_connections=3"]);
    // wait_port's probe connection may still be counted for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(Client::connect(broker.port, ProtocolVersion::V5, &format!("c{n}"), true).await);
    }
    let mut extra = Client::open(broker.port, ProtocolVersion::V5).await;
    extra.send(&Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "c3", true)))).await;
    let seen = extra.expect_close().await;
    assert!(seen.is_empty(), "the fourth connection was served: {seen:?}");
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Client::connect(broker.port, ProtocolVersion::V5, "c4", true).await;
}

#[tokio::test]
async fn websocket_frames_up_to_64_mib_before_authentication() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let broker = Broker::start(&[]);
    let mut request = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("ws handshake");
    // One frame: a valid CONNECT, then 2 MiB of PINGREQs (each packet is
    // small; the frame is twice mqtt.max_packet_size).
    let mut frame = bytes::BytesMut::new();
    let v5 = ProtocolVersion::V5;
    mqtt_codec::encode(&Packet::Connect(Box::new(connect_packet(v5, "big-frame", true))), v5, &mut frame)
        .unwrap();
    frame.extend(std::iter::repeat_n([0xC0u8, 0x00], 1024 * 1024).flatten());
    let _ = ws.send(WsMessage::Binary(frame.freeze())).await;
    let answer = tokio::time::timeout(common::WAIT, ws.next()).await.expect("the broker answers or closes");
    match answer {
        None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => {}
        Some(Ok(other)) => panic!("an oversized frame was read: {} bytes came back", other.len()),
    }
}

#[tokio::test]
async fn proxied_clients_all_look_like_the_proxy() {
    // Clients arrive from non-loopback addresses: let them in anonymously.
    let (broker, grpc) =
        Broker::start_with_grpc(&["listeners.tcp.proxy_protocol=true", "auth.allow_anonymous=allow"]);
    let port = broker.port;
    mqttctl(&broker, &grpc, &["banned", "add", "--ipaddr", "203.0.113.0/24"]);
    let via_proxy = |source: &'static str, version: ProtocolVersion, id: &'static str| async move {
        let mut client = Client::open(port, version).await;
        client.send_bytes(format!("PROXY TCP4 {source} 127.0.0.1 50000 {port}\r\n").as_bytes()).await;
        client.send(&Packet::Connect(Box::new(connect_packet(version, id, true)))).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => ack.reason,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    };
    for version in VERSIONS {
        let banned = if version.is_v5() { ReasonCode::BANNED } else { ReasonCode::NOT_AUTHORIZED };
        until!("the ban on 203.0.113.0/24", via_proxy("203.0.113.7", version, "behind").await == banned);
        assert_eq!(via_proxy("198.51.100.1", version, "fine").await, ReasonCode::SUCCESS, "{version:?}");
        // A connection that did not come through the proxy is closed unheard.
        let mut direct = Client::open(port, version).await;
        direct.send(&Packet::Connect(Box::new(connect_packet(version, "direct", true)))).await;
        assert!(direct.expect_close().await.is_empty(), "{version:?}: served without a PROXY header");
    }
}

#[tokio::test]
async fn any_web_page_may_open_a_websocket() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let broker = Broker::start(&[r#"listeners.ws.allowed_origins=["https://app.example"]"#]);
    let open = |origin: Option<&'static str>| {
        let url = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port);
        async move {
            let mut request = url.into_client_request().unwrap();
            request.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
            if let Some(origin) = origin {
                request.headers_mut().insert("Origin", origin.parse().unwrap());
            }
            tokio_tungstenite::connect_async(request).await.is_ok()
        }
    };
    assert!(open(Some("https://app.example")).await, "the allowed origin");
    assert!(!open(Some("https://evil.example")).await, "another page's origin");
    assert!(!open(None).await, "no origin at all");
}

#[tokio::test]
async fn ban_misses_a_hibernating_client() {
    // Idle connections give up their task; a ban must still reach them.
    let (broker, grpc) = Broker::start_with_grpc(&["mqtt.hibernate_after_ms=100"]);
    let port = broker.port;
    mqttctl(&broker, &grpc, &["users", "add", "carol", "--password", "c"]);
    let login = |version: ProtocolVersion| {
        let mut connect = connect_packet(version, &format!("carol-{version:?}"), true);
        connect.username = Some("carol".into());
        connect.password = Some("c".as_bytes().to_vec().into());
        connect
    };
    eventually("carol's account", || async move {
        Client::connect_with(port, login(ProtocolVersion::V5)).await.1.reason.is_success()
    })
    .await;
    let mut sleepers = Vec::new();
    for version in VERSIONS {
        let (client, ack) = Client::connect_with(port, login(version)).await;
        assert!(ack.reason.is_success());
        sleepers.push(client);
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // both hibernate
    mqttctl(&broker, &grpc, &["banned", "add", "--username", "carol"]);
    for client in &mut sleepers {
        client.expect_disconnect(ReasonCode::ADMINISTRATIVE_ACTION).await;
    }
}

#[tokio::test]
async fn proxy_header_taken_from_anyone() {
    // Only the load balancer at 10.9.9.9 may send PROXY headers here.
    let broker = Broker::start(&[
        "listeners.tcp.proxy_protocol=true",
        r#"listeners.tcp.proxy_protocol_from=["10.9.9.9"]"#,
        "auth.allow_anonymous=allow",
    ]);
    for version in VERSIONS {
        let mut forger = Client::open(broker.port, version).await;
        forger
            .send_bytes(format!("PROXY TCP4 10.1.1.1 127.0.0.1 50000 {}\r\n", broker.port).as_bytes())
            .await;
        forger.send(&Packet::Connect(Box::new(connect_packet(version, "forger", true)))).await;
        assert!(forger.expect_close().await.is_empty(), "{version:?}: a header from 127.0.0.1 was trusted");
    }
}
