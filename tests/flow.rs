//! QoS flows and flow control: acknowledgements in both directions, the
//! in-flight window, Receive Maximum, redelivery with DUP after a reconnect,
//! QoS 2 exactly once across a reconnect, topic aliases, Maximum Packet Size
//! and overlapping subscriptions.

mod common;

use std::time::Duration;

use common::{connect_packet, Broker, Client, VERSIONS};
use mqtt_codec::{
    Packet, ProtocolVersion, PubAck, Publish, PublishProperties, QoS, ReasonCode, SubscriptionOptions,
};

fn ack(packet_id: u16) -> PubAck {
    PubAck { packet_id, ..Default::default() }
}

fn publish(topic: &str, qos: QoS, packet_id: u16, payload: &str) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
        payload: payload.as_bytes().to_vec().into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn qos_is_downgraded_to_the_subscription() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut sub = Client::connect(broker.port, version, "sub", true).await;
        sub.subscribe("down/q1", QoS::AtLeastOnce).await;
        let mut publisher = Client::connect(broker.port, version, "pub", true).await;
        publisher.publish("down/q1", b"two", QoS::ExactlyOnce, 7).await;
        let got = sub.expect_publish().await;
        assert_eq!(got.qos, QoS::AtLeastOnce);
        sub.send(&Packet::PubAck(ack(got.packet_id.unwrap()))).await;
        publisher.publish("down/q1", b"zero", QoS::AtMostOnce, 0).await;
        assert_eq!(sub.expect_publish().await.qos, QoS::AtMostOnce);
    }
}

#[tokio::test]
async fn qos2_outgoing_flow_completes() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut sub = Client::connect(broker.port, version, "sub2", true).await;
        sub.subscribe("q2/t", QoS::ExactlyOnce).await;
        let mut publisher = Client::connect(broker.port, version, "pub2", true).await;
        publisher.publish("q2/t", b"once", QoS::ExactlyOnce, 1).await;
        let got = sub.expect_publish().await;
        assert_eq!(got.qos, QoS::ExactlyOnce);
        let id = got.packet_id.unwrap();
        sub.send(&Packet::PubRec(ack(id))).await;
        assert_eq!(sub.recv().await, Some(Packet::PubRel(ack(id))));
        sub.send(&Packet::PubComp(ack(id))).await;
        sub.expect_silence(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn inflight_window_follows_the_client_receive_maximum() {
    let broker = Broker::start(&[]);
    let mut connect = connect_packet(ProtocolVersion::V5, "slow", true);
    connect.properties.receive_maximum = Some(2);
    let (mut sub, _) = Client::connect_with(broker.port, connect).await;
    sub.subscribe("win/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(broker.port, ProtocolVersion::V5, "fast", true).await;
    for i in 0..5u16 {
        publisher.publish("win/t", format!("{i}").as_bytes(), QoS::AtLeastOnce, i + 1).await;
    }
    let first = sub.expect_publish().await;
    let second = sub.expect_publish().await;
    sub.expect_silence(Duration::from_millis(300)).await;
    sub.send(&Packet::PubAck(ack(first.packet_id.unwrap()))).await;
    let third = sub.expect_publish().await;
    assert_eq!(&third.payload[..], b"2");
    sub.expect_silence(Duration::from_millis(200)).await;
    for p in [second, third] {
        sub.send(&Packet::PubAck(ack(p.packet_id.unwrap()))).await;
    }
    for expected in ["3", "4"] {
        let p = sub.expect_publish().await;
        assert_eq!(&p.payload[..], expected.as_bytes(), "in order");
        sub.send(&Packet::PubAck(ack(p.packet_id.unwrap()))).await;
    }
}

#[tokio::test]
async fn exceeding_the_server_receive_maximum_disconnects_with_0x93() {
    let broker = Broker::start(&["mqtt.receive_maximum=3"]);
    let mut client = Client::connect(broker.port, ProtocolVersion::V5, "greedy", true).await;
    for id in 1..=3 {
        client.send(&publish("rm/t", QoS::ExactlyOnce, id, "x")).await;
        assert!(matches!(client.recv().await, Some(Packet::PubRec(_))));
    }
    client.send(&publish("rm/t", QoS::ExactlyOnce, 4, "x")).await;
    client.expect_disconnect(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED).await;
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_after_reconnect() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut connect = connect_packet(version, "resend", true);
        connect.properties.session_expiry_interval = Some(60);
        let (sub, _) = Client::connect_with(broker.port, connect).await;
        drop(sub);
        let mut connect = connect_packet(version, "resend", false);
        connect.properties.session_expiry_interval = Some(60);
        let (mut sub, _) = Client::connect_with(broker.port, connect.clone()).await;
        sub.subscribe("dup/#", QoS::ExactlyOnce).await;
        let mut publisher = Client::connect(broker.port, version, "dup-pub", true).await;
        publisher.publish("dup/one", b"q1", QoS::AtLeastOnce, 1).await;
        publisher.publish("dup/two", b"q2", QoS::ExactlyOnce, 2).await;
        publisher.publish("dup/three", b"q2b", QoS::ExactlyOnce, 3).await;
        let one = sub.expect_publish().await;
        let two = sub.expect_publish().await;
        let three = sub.expect_publish().await;
        assert!(!one.dup && !two.dup);
        // Acknowledge the third as far as PUBREC, then drop the connection.
        sub.send(&Packet::PubRec(ack(three.packet_id.unwrap()))).await;
        assert!(matches!(sub.recv().await, Some(Packet::PubRel(_))));
        drop(sub);
        tokio::time::sleep(Duration::from_millis(100)).await;

        let (mut sub, ack_packet) = Client::connect_with(broker.port, connect).await;
        assert!(ack_packet.session_present);
        let again_one = sub.expect_publish().await;
        assert!(again_one.dup);
        assert_eq!(again_one.packet_id, one.packet_id);
        assert_eq!(&again_one.payload[..], b"q1");
        let again_two = sub.expect_publish().await;
        assert!(again_two.dup);
        assert_eq!(again_two.packet_id, two.packet_id);
        assert_eq!(sub.recv().await, Some(Packet::PubRel(ack(three.packet_id.unwrap()))));
        sub.send(&Packet::PubAck(ack(one.packet_id.unwrap()))).await;
        sub.send(&Packet::PubRec(ack(two.packet_id.unwrap()))).await;
        assert!(matches!(sub.recv().await, Some(Packet::PubRel(_))));
        sub.send(&Packet::PubComp(ack(two.packet_id.unwrap()))).await;
        sub.send(&Packet::PubComp(ack(three.packet_id.unwrap()))).await;
        sub.expect_silence(Duration::from_millis(200)).await;
        sub.send(&Packet::Disconnect(Default::default())).await;
        let _ = Client::connect_with(broker.port, connect_packet(version, "resend", true)).await;
    }
}

#[tokio::test]
async fn incoming_qos2_is_routed_exactly_once_across_a_reconnect() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut sub = Client::connect(broker.port, version, "once-sub", true).await;
        sub.subscribe("once/t", QoS::AtMostOnce).await;
        let mut connect = connect_packet(version, "once-pub", false);
        connect.properties.session_expiry_interval = Some(60);
        let (mut publisher, _) = Client::connect_with(broker.port, connect.clone()).await;
        publisher.send(&publish("once/t", QoS::ExactlyOnce, 9, "exactly")).await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubRec(_))));
        // Held until PUBREL, across the publisher's reconnect.
        sub.expect_silence(Duration::from_millis(200)).await;
        drop(publisher);
        let (mut publisher, ack_packet) = Client::connect_with(broker.port, connect).await;
        assert!(ack_packet.session_present);
        let mut resend = publish("once/t", QoS::ExactlyOnce, 9, "exactly");
        if let Packet::Publish(p) = &mut resend {
            p.dup = true;
        }
        publisher.send(&resend).await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubRec(_))));
        publisher.send(&Packet::PubRel(ack(9))).await;
        assert_eq!(publisher.recv().await, Some(Packet::PubComp(ack(9))));
        assert_eq!(&sub.expect_publish().await.payload[..], b"exactly");
        sub.expect_silence(Duration::from_millis(300)).await;
        publisher.send(&Packet::Disconnect(Default::default())).await;
        let _ = Client::connect_with(broker.port, connect_packet(version, "once-pub", true)).await;
    }
}

/// Mosquitto's order, which client code relies on (aiomqtt's test suite
/// does): a QoS 2 message reaches subscribers at its PUBREL, so a client
/// subscribed to its own topic gets PUBCOMP before the message.
#[tokio::test]
async fn a_qos2_message_is_forwarded_at_pubrel() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut client = Client::connect(broker.port, version, "self-sub", true).await;
        client.subscribe("self/t", QoS::ExactlyOnce).await;
        let mut other = Client::connect(broker.port, version, "other-sub", true).await;
        other.subscribe("self/t", QoS::AtMostOnce).await;
        client.send(&publish("self/t", QoS::ExactlyOnce, 5, "mine")).await;
        assert_eq!(client.recv().await, Some(Packet::PubRec(ack(5))));
        client.expect_silence(Duration::from_millis(200)).await;
        other.expect_silence(Duration::from_millis(10)).await;
        client.send(&Packet::PubRel(ack(5))).await;
        assert_eq!(client.recv().await, Some(Packet::PubComp(ack(5))));
        let got = client.expect_publish().await;
        assert_eq!((&got.payload[..], got.qos), (&b"mine"[..], QoS::ExactlyOnce));
        assert_eq!(&other.expect_publish().await.payload[..], b"mine");
        // Refused at PUBLISH: PUBREC says so (v5) and a PUBREL finds nothing.
        client.send(&publish("$SYS/forged", QoS::ExactlyOnce, 6, "x")).await;
        match client.recv().await {
            Some(Packet::PubRec(rec)) if version.is_v5() => {
                assert_eq!(rec.reason, ReasonCode::NOT_AUTHORIZED)
            }
            Some(Packet::PubRec(_)) => {}
            other => panic!("expected PUBREC, got {other:?}"),
        }
        client.send(&Packet::PubRel(ack(6))).await;
        match client.recv().await {
            Some(Packet::PubComp(comp)) if version.is_v5() => {
                assert_eq!(comp.reason, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
            }
            Some(Packet::PubComp(_)) => {}
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
        client.expect_silence(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn topic_aliases_both_ways() {
    let broker = Broker::start(&[]);
    let mut connect = connect_packet(ProtocolVersion::V5, "alias-sub", true);
    connect.properties.topic_alias_maximum = Some(4);
    let (mut sub, _) = Client::connect_with(broker.port, connect).await;
    sub.subscribe("alias/#", QoS::AtMostOnce).await;
    let mut publisher = Client::connect(broker.port, ProtocolVersion::V5, "alias-pub", true).await;
    // Client to server: set alias 1 with the topic, then use it alone.
    let mut first = Publish { topic: "alias/long/topic".into(), payload: "a".into(), ..Default::default() };
    first.properties.topic_alias = Some(1);
    publisher.send(&Packet::Publish(first)).await;
    let mut second = Publish { topic: String::new(), payload: "b".into(), ..Default::default() };
    second.properties.topic_alias = Some(1);
    publisher.send(&Packet::Publish(second)).await;
    // Server to client: the topic once with an alias, then the alias alone.
    let a = sub.expect_publish().await;
    assert_eq!(a.topic, "alias/long/topic");
    let alias = a.properties.topic_alias.expect("server sets an alias");
    let b = sub.expect_publish().await;
    assert_eq!(b.topic, "");
    assert_eq!(b.properties.topic_alias, Some(alias));
    assert_eq!(&b.payload[..], b"b");
}

#[tokio::test]
async fn messages_above_the_client_maximum_packet_size_are_not_sent() {
    let broker = Broker::start(&[]);
    let mut connect = connect_packet(ProtocolVersion::V5, "small", true);
    connect.properties.maximum_packet_size = Some(100);
    let (mut sub, _) = Client::connect_with(broker.port, connect).await;
    sub.subscribe("size/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(broker.port, ProtocolVersion::V5, "big", true).await;
    publisher.publish("size/t", &[b'x'; 500], QoS::AtLeastOnce, 1).await;
    publisher.publish("size/t", b"small", QoS::AtLeastOnce, 2).await;
    let got = sub.expect_publish().await;
    assert_eq!(&got.payload[..], b"small");
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_with_the_highest_qos_and_all_identifiers() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut sub = Client::connect(broker.port, version, "overlap", true).await;
        let opts = |qos| SubscriptionOptions { qos, ..Default::default() };
        sub.subscribe_with("ov/+", opts(QoS::AtMostOnce), version.is_v5().then_some(1)).await;
        sub.subscribe_with("ov/#", opts(QoS::AtLeastOnce), version.is_v5().then_some(2)).await;
        let mut publisher = Client::connect(broker.port, version, "ov-pub", true).await;
        publisher.publish("ov/t", b"m", QoS::AtLeastOnce, 1).await;
        let got = sub.expect_publish().await;
        assert_eq!(got.qos, QoS::AtLeastOnce);
        if version.is_v5() {
            let mut ids = got.properties.subscription_identifiers.clone();
            ids.sort();
            assert_eq!(ids, vec![1, 2]);
        }
        sub.send(&Packet::PubAck(ack(got.packet_id.unwrap()))).await;
        sub.expect_silence(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn v5_properties_pass_through() {
    let broker = Broker::start(&[]);
    let mut sub = Client::connect(broker.port, ProtocolVersion::V5, "props-sub", true).await;
    sub.subscribe("props/t", QoS::AtMostOnce).await;
    let mut publisher = Client::connect(broker.port, ProtocolVersion::V5, "props-pub", true).await;
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        response_topic: Some("props/reply".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"\x01\x02")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        message_expiry_interval: Some(100),
        ..Default::default()
    };
    let message = Publish {
        topic: "props/t".into(),
        payload: "hi".into(),
        properties: properties.clone(),
        ..Default::default()
    };
    publisher.send(&Packet::Publish(message)).await;
    let got = sub.expect_publish().await;
    assert_eq!(got.properties.payload_format_indicator, Some(1));
    assert_eq!(got.properties.content_type, properties.content_type);
    assert_eq!(got.properties.response_topic, properties.response_topic);
    assert_eq!(got.properties.correlation_data, properties.correlation_data);
    assert_eq!(got.properties.user_properties, properties.user_properties);
    let expiry = got.properties.message_expiry_interval.expect("expiry passed on");
    assert!((99..=100).contains(&expiry), "{expiry}");
}

#[tokio::test]
async fn no_local_and_retain_as_published() {
    let broker = Broker::start(&[]);
    let mut client = Client::connect(broker.port, ProtocolVersion::V5, "self", true).await;
    let options = SubscriptionOptions { qos: QoS::AtMostOnce, no_local: true, ..Default::default() };
    client.subscribe_with("nl/t", options, None).await;
    let options =
        SubscriptionOptions { qos: QoS::AtMostOnce, retain_as_published: true, ..Default::default() };
    client.subscribe_with("rap/t", options, None).await;
    client.send(&publish("nl/t", QoS::AtMostOnce, 0, "mine")).await;
    client.expect_silence(Duration::from_millis(300)).await;
    let mut retained =
        Publish { topic: "rap/t".into(), payload: "r".into(), retain: true, ..Default::default() };
    client.send(&Packet::Publish(retained.clone())).await;
    assert!(client.expect_publish().await.retain, "Retain As Published keeps the flag");
    retained.payload = bytes::Bytes::new();
    client.send(&Packet::Publish(retained)).await;
}

#[tokio::test]
async fn local_subscriptions_receive_this_nodes_messages() {
    let broker = Broker::start(&[]);
    for version in VERSIONS {
        let mut sub = Client::connect(broker.port, version, "local", true).await;
        sub.subscribe("$local/loc/+", QoS::AtLeastOnce).await;
        let mut publisher = Client::connect(broker.port, version, "loc-pub", true).await;
        publisher.publish("loc/a", b"here", QoS::AtLeastOnce, 1).await;
        let got = sub.expect_publish().await;
        assert_eq!(got.topic, "loc/a");
        sub.send(&Packet::PubAck(ack(got.packet_id.unwrap()))).await;
        let unsubscribe = mqtt_codec::Unsubscribe {
            packet_id: 2,
            filters: vec!["$local/loc/+".into()],
            ..Default::default()
        };
        sub.send(&Packet::Unsubscribe(unsubscribe)).await;
        match sub.recv().await {
            Some(Packet::UnsubAck(ack)) if version.is_v5() => {
                assert_eq!(ack.reasons, vec![ReasonCode::SUCCESS])
            }
            Some(Packet::UnsubAck(_)) => {}
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        publisher.publish("loc/a", b"gone", QoS::AtLeastOnce, 2).await;
        sub.expect_silence(Duration::from_millis(200)).await;
    }
}

/// Regression: a backlog larger than one pump batch used to stall until the
/// next publish arrived (QoS 0 has no acknowledgements to wake the loop).
#[tokio::test]
async fn a_qos0_backlog_is_delivered_without_further_publishes() {
    let broker = Broker::start(&["session.max_queued_messages=10000"]);
    let mut sub = Client::connect(broker.port, ProtocolVersion::V311, "backlog-sub", true).await;
    sub.subscribe("backlog/t", QoS::AtMostOnce).await;
    let mut publisher = Client::connect(broker.port, ProtocolVersion::V311, "backlog-pub", true).await;
    let mut burst = bytes::BytesMut::new();
    for i in 0..2000u32 {
        let packet = publish("backlog/t", QoS::AtMostOnce, 0, &i.to_string());
        mqtt_codec::encode(&packet, ProtocolVersion::V311, &mut burst).unwrap();
    }
    publisher.send_bytes(&burst).await;
    for i in 0..2000u32 {
        let got = sub.expect_publish().await;
        assert_eq!(&got.payload[..], i.to_string().as_bytes(), "in order, none lost");
    }
}

/// Back-pressure: publishers that outrun a subscriber are slowed to its pace
/// instead of losing messages, even with a queue far smaller than the burst.
/// Every message arrives once and in order per publisher, and no publisher
/// gets its last PUBACK while more of its messages than the queue and window
/// hold are still on their way to the (deliberately slow) subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_publishers_are_slowed_not_dropped() {
    use std::sync::atomic::{AtomicU16, Ordering};
    let (queue, window) = (100usize, 10usize);
    let broker = Broker::start(&[
        &format!("session.max_queued_messages={queue}"),
        &format!("mqtt.max_inflight={window}"),
    ]);
    let mut sub = Client::connect(broker.port, ProtocolVersion::V311, "slow-sub", true).await;
    sub.subscribe("flood/#", QoS::AtLeastOnce).await;
    let publishers = 8u16;
    let per_publisher = 500u16;
    let total = publishers as usize * per_publisher as usize;
    // Per publisher, the last of its messages the subscriber has read.
    let received: std::sync::Arc<Vec<AtomicU16>> =
        std::sync::Arc::new((0..publishers).map(|_| AtomicU16::new(0)).collect());
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let port = broker.port;
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let mut publisher =
                Client::connect(port, ProtocolVersion::V311, &format!("flood-{p}"), true).await;
            let mut burst = bytes::BytesMut::new();
            for i in 1..=per_publisher {
                let packet = publish(&format!("flood/{p}"), QoS::AtLeastOnce, i, &i.to_string());
                mqtt_codec::encode(&packet, ProtocolVersion::V311, &mut burst).unwrap();
            }
            publisher.send_bytes(&burst).await;
            for _ in 1..=per_publisher {
                assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
            }
            // How far the subscriber had got when this publisher was done.
            received[p as usize].load(Ordering::SeqCst)
        }));
    }
    for count in 0..total {
        match sub.recv().await {
            Some(Packet::Publish(p)) => {
                let publisher: usize = p.topic["flood/".len()..].parse().unwrap();
                let seq: u16 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                let last = received[publisher].load(Ordering::SeqCst);
                assert_eq!(seq, last + 1, "publisher {publisher}: duplicate, lost or reordered");
                received[publisher].store(seq, Ordering::SeqCst);
                sub.send(&Packet::PubAck(ack(p.packet_id.unwrap()))).await;
                if count % 20 == 0 {
                    // A subscriber slower than the publishers.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            other => panic!("after {count} of {total}: {other:?}"),
        }
    }
    sub.expect_silence(Duration::from_millis(200)).await;
    for task in tasks {
        let seen = task.await.unwrap() as usize;
        // An unslowed publisher would finish with most of its burst still
        // queued; a slowed one is ahead by at most the queue and the window.
        assert!(
            seen + queue + window >= per_publisher as usize,
            "a publisher got its last PUBACK when the subscriber had {seen} of its {per_publisher}"
        );
    }
}

/// A subscriber that stops reading holds publishers back once, for at most
/// the back-pressure wait; after that its queue limit and policy apply and
/// publishers run at full speed again.
#[tokio::test]
async fn a_stalled_subscriber_does_not_hold_publishers_forever() {
    let broker = Broker::start(&["session.max_queued_messages=50", "mqtt.max_inflight=5"]);
    let mut stuck = Client::connect(broker.port, ProtocolVersion::V311, "stuck", true).await;
    stuck.subscribe("stall/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(broker.port, ProtocolVersion::V311, "stall-pub", true).await;
    let started = std::time::Instant::now();
    let mut burst = bytes::BytesMut::new();
    for i in 1..=1000u16 {
        mqtt_codec::encode(&publish("stall/t", QoS::AtLeastOnce, i, "x"), ProtocolVersion::V311, &mut burst)
            .unwrap();
    }
    publisher.send_bytes(&burst).await;
    for i in 1..=1000u16 {
        match publisher.recv().await {
            Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, i),
            other => panic!("PUBACK {i}: {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "publisher held for {took:?}");
    drop(stuck);
}
