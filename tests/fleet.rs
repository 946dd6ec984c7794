//! A fleet: one control plane and three data-plane processes, each on its
//! own loopback address (127.0.0.21-23), that behave as one broker. Real
//! clients on different nodes: cross-node delivery at every QoS, in order
//! and once; `$local/` subscriptions that stay on their node; a node killed
//! under QoS 1 load without losing what was acknowledged; a message
//! published on another node right after SUBACK; a shared group with
//! members on every node, each message once, spread evenly.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::{connect_packet, Client};
use mqtt_codec::{Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode};

const IPS: [&str; 3] = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];

struct Fleet {
    _cp: Process,
    url: String,
    nodes: Vec<Process>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

/// A bootstrapped control plane and `n` data-plane nodes (ids 1..=n) that
/// let anonymous clients in.
async fn fleet(n: usize) -> Fleet {
    fleet_with(n, &[]).await
}

/// Like [`fleet`], each node with `extra` settings too.
async fn fleet_with(n: usize, extra: &[String]) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let [grpc] = common::free_ports();
    let cp = controlplane(1, "127.0.0.1", grpc, dir.path(), true);
    let url = format!("http://127.0.0.1:{grpc}");
    wait_for("the control plane", Duration::from_secs(15), || (leader_of(&url) == Some(1)).then_some(()))
        .await;
    let token = token_file(dir.path(), "member.token", MEMBER_TOKEN);
    let ports: Vec<u16> = (0..n).map(|_| common::free_port()).collect();
    let nodes = (0..n).map(|i| start_node(i, ports[i], &url, dir.path(), &token, extra)).collect();
    let fleet = Fleet { _cp: cp, url, nodes, ports, _dir: dir };
    for i in 0..n {
        drop(fleet.client(i, &format!("probe-{i}")).await);
    }
    fleet
}

fn start_node(i: usize, port: u16, url: &str, dir: &Path, token: &Path, extra: &[String]) -> Process {
    let members = url.trim_start_matches("http://");
    let mut settings = vec!["auth.allow_anonymous=allow", "sys.interval=1"];
    settings.extend(extra.iter().map(String::as_str));
    dataplane_on(i as u64 + 1, IPS[i], port, members, dir, token, &settings)
}

impl Fleet {
    /// An MQTT 5 client on node `i`, once that node lets clients in.
    async fn client(&self, i: usize, client_id: &str) -> Client {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Only this fleet's node i: the tests share the addresses, and a
            // port picked free may be taken by another test's node first
            // (then this node cannot listen, and another would answer). A
            // test that holds its nodes itself checks its own.
            let ours =
                self.nodes.get(i).is_none_or(|node| common::listens_on(node.child.id(), self.ports[i]));
            if ours && tokio::net::TcpStream::connect((IPS[i], self.ports[i])).await.is_ok() {
                let connect = connect_packet(ProtocolVersion::V5, client_id, true);
                let (client, ack) = Client::connect_with_at(IPS[i], self.ports[i], connect).await;
                if ack.reason.is_success() {
                    return client;
                }
            }
            assert!(Instant::now() < deadline, "node {i} does not let clients in");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Publishes probes on `topic` from `publisher` until `subscriber` gets
/// one (the route reached the publisher's node), then drains the probes.
async fn wait_route(publisher: &mut Client, subscriber: &mut Client, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        publisher.publish(topic, b"probe", QoS::AtMostOnce, 0).await;
        if let Some(Packet::Publish(publish)) = subscriber.recv_within(Duration::from_millis(200)).await {
            assert_eq!(&publish.payload[..], b"probe");
            break;
        }
        assert!(Instant::now() < deadline, "the route for {topic} never reached the publisher's node");
    }
    // Probes still on their way.
    while subscriber.recv_within(Duration::from_millis(300)).await.is_some() {}
}

/// Sends a QoS 1 or 2 PUBLISH and completes the exchange.
async fn publish_acked(client: &mut Client, topic: &str, payload: Vec<u8>, qos: QoS, packet_id: u16) {
    let publish = Publish {
        qos,
        topic: topic.into(),
        packet_id: Some(packet_id),
        payload: payload.into(),
        ..Default::default()
    };
    client.send(&Packet::Publish(publish)).await;
    match (qos, client.recv().await) {
        (QoS::AtLeastOnce, Some(Packet::PubAck(ack))) => {
            assert_eq!(ack.packet_id, packet_id);
            assert!(ack.reason.is_success(), "{ack:?}");
        }
        (QoS::ExactlyOnce, Some(Packet::PubRec(rec))) => {
            assert_eq!(rec.packet_id, packet_id);
            client.send(&Packet::PubRel(PubAck { packet_id, ..Default::default() })).await;
            assert!(matches!(client.recv().await, Some(Packet::PubComp(c)) if c.packet_id == packet_id));
        }
        (_, other) => panic!("unexpected answer to a QoS {qos:?} PUBLISH: {other:?}"),
    }
}

/// Receives `count` messages, acknowledging QoS 1/2 ones; returns payloads.
async fn receive(client: &mut Client, count: usize) -> Vec<(QoS, String)> {
    let mut got = Vec::new();
    while got.len() < count {
        let Some(packet) = client.recv_within(Duration::from_secs(5)).await else {
            panic!("only {} of {count} messages arrived", got.len());
        };
        let publish = match packet {
            Packet::Publish(publish) => publish,
            Packet::PubRel(rel) => {
                client
                    .send(&Packet::PubComp(PubAck { packet_id: rel.packet_id, ..Default::default() }))
                    .await;
                continue;
            }
            other => panic!("unexpected {other:?}"),
        };
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(packet_id)) => {
                client.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await
            }
            (QoS::ExactlyOnce, Some(packet_id)) => {
                client.send(&Packet::PubRec(PubAck { packet_id, ..Default::default() })).await
            }
            _ => {}
        }
        got.push((publish.qos, String::from_utf8_lossy(&publish.payload).to_string()));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_node_hears_a_publisher_on_another_at_every_qos_in_order_and_once() {
    let fleet = fleet(3).await;
    let mut sub_a = fleet.client(0, "sub-a").await;
    let mut twin_a = fleet.client(0, "twin-a").await;
    let mut sub_b = fleet.client(1, "sub-b").await;
    let mut publisher = fleet.client(2, "pub-c").await;
    for client in [&mut sub_a, &mut twin_a, &mut sub_b] {
        client.subscribe("fleet/+", QoS::ExactlyOnce).await;
    }
    wait_route(&mut publisher, &mut sub_a, "fleet/probe").await;
    wait_route(&mut publisher, &mut sub_b, "fleet/probe").await;
    for client in [&mut sub_a, &mut twin_a] {
        while client.recv_within(Duration::from_millis(300)).await.is_some() {}
    }

    let per_qos = 100;
    let mut expected = Vec::new();
    for (q, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        for n in 0..per_qos {
            let payload = format!("q{q}-{n:04}").into_bytes();
            if qos == QoS::AtMostOnce {
                publisher.publish("fleet/data", &payload, qos, 0).await;
            } else {
                publish_acked(&mut publisher, "fleet/data", payload.clone(), qos, (n + 1) as u16).await;
            }
            expected.push((qos, String::from_utf8_lossy(&payload).to_string()));
        }
    }
    for (name, client) in [("A", &mut sub_a), ("A's twin", &mut twin_a), ("B", &mut sub_b)] {
        let got = receive(client, expected.len()).await;
        assert_eq!(got, expected, "node {name}: every message once, in order, at its QoS");
        // The last PUBRELs, then nothing more.
        while let Some(packet) = client.recv_within(Duration::from_millis(500)).await {
            let Packet::PubRel(rel) = packet else { panic!("after the last message: {packet:?}") };
            client.send(&Packet::PubComp(PubAck { packet_id: rel.packet_id, ..Default::default() })).await;
        }
        client.expect_silence(Duration::from_millis(300)).await;
    }

    // The route is the control plane's.
    let routes = routes(&fleet.url).await.expect("routes");
    assert!(routes.iter().any(|(f, nodes)| f == "fleet/+" && nodes.contains(&1) && nodes.contains(&2)));

    // Once per node, not per subscriber: node C sent each message to A once
    // (though A has two subscribers) and to B once.
    let mut watcher = fleet.client(2, "sys-c").await;
    watcher.subscribe("$SYS/brokers/dp3/metrics/messages/forward/sent", QoS::AtMostOnce).await;
    // The retained value may predate the last messages: take the next tick's too.
    let mut sent = 0u64;
    for _ in 0..2 {
        match watcher.recv_within(Duration::from_secs(3)).await {
            Some(Packet::Publish(p)) => sent = String::from_utf8_lossy(&p.payload).parse().expect("a count"),
            other => panic!("no $SYS forward count from node C: {other:?}"),
        }
    }
    // 300 messages to two nodes, plus the probes wait_route sent (at most 2 × 75 each way).
    assert!((600..=900).contains(&sent), "node C forwarded {sent} messages for 300 to two nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_subscriptions_hear_only_their_own_node() {
    let fleet = fleet(2).await;
    let mut local = fleet.client(0, "local-a").await;
    let mut plain = fleet.client(0, "plain-a").await;
    let mut here = fleet.client(0, "pub-a").await;
    let mut there = fleet.client(1, "pub-b").await;
    local.subscribe("$local/loc/#", QoS::AtLeastOnce).await;
    plain.subscribe("loc/#", QoS::AtLeastOnce).await;
    // Positive control: node B forwards `loc/...` to node A, for `plain`.
    wait_route(&mut there, &mut plain, "loc/probe").await;
    while local.recv_within(Duration::from_millis(200)).await.is_some() {}

    there.publish("loc/x", b"from-b", QoS::AtLeastOnce, 1).await;
    assert_eq!(&plain.expect_publish().await.payload[..], b"from-b");
    local.expect_silence(Duration::from_millis(800)).await;

    here.publish("loc/x", b"from-a", QoS::AtLeastOnce, 1).await;
    assert_eq!(
        &local.expect_publish().await.payload[..],
        b"from-a",
        "a $local/ subscriber hears its own node"
    );

    let routes = routes(&fleet.url).await.expect("routes");
    assert!(
        !routes.iter().any(|(f, _)| f.starts_with("$local")),
        "no route for a $local/ filter: {routes:?}"
    );
    assert!(routes.iter().any(|(f, _)| f == "loc/#"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_under_qos1_load_loses_nothing_acknowledged_to_the_survivors() {
    let mut fleet = fleet(3).await;
    let mut sub_a = fleet.client(0, "sub-a").await;
    let mut sub_b = fleet.client(1, "sub-b").await;
    let mut publisher = fleet.client(2, "pub-c").await;
    sub_a.subscribe("load/#", QoS::AtLeastOnce).await;
    sub_b.subscribe("load/#", QoS::AtLeastOnce).await;
    wait_route(&mut publisher, &mut sub_a, "load/probe").await;
    wait_route(&mut publisher, &mut sub_b, "load/probe").await;

    // Subscriber A acknowledges in the background and records what it got.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(packet) = sub_a.recv_within(Duration::from_secs(8)).await {
            if let Packet::Publish(publish) = packet {
                if let Some(packet_id) = publish.packet_id {
                    sub_a.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
                }
                got.push(String::from_utf8_lossy(&publish.payload).to_string());
            }
        }
        got
    });

    let started = Instant::now();
    let mut acknowledged = Vec::new();
    for n in 0..400u16 {
        if n == 100 {
            fleet.nodes[1].kill9();
        }
        let payload = format!("m{n:04}");
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: "load/x".into(),
            packet_id: Some(n + 1),
            payload: payload.clone().into_bytes().into(),
            ..Default::default()
        };
        publisher.send(&Packet::Publish(publish)).await;
        match publisher.recv_within(Duration::from_secs(40)).await {
            Some(Packet::PubAck(ack)) if ack.packet_id == n + 1 && ack.reason == ReasonCode::SUCCESS => {
                acknowledged.push(payload)
            }
            other => panic!("message {n}: expected its PUBACK, got {other:?}"),
        }
    }
    // The dead node is declared down (dataplane_down_after = 2 s) and stops
    // holding acknowledgements long before the 30 s timeout.
    assert!(started.elapsed() < Duration::from_secs(25), "PUBACKs waited {:?}", started.elapsed());
    let got = reader.await.unwrap();
    let got: std::collections::HashSet<String> = got.into_iter().collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|p| !got.contains(*p)).collect();
    assert!(lost.is_empty(), "acknowledged but never delivered on node A: {lost:?}");
    drop(sub_b);
}

/// A slow link: accepts on `listen`, forwards to `upstream`; the way in is
/// throttled to about 40 KB/s (with a small receive buffer, so that the
/// sender's own buffers fill), the way back is not.
async fn slow_proxy(listen: std::net::SocketAddr, upstream: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.bind(listen).unwrap();
    let listener = socket.listen(16).unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else { continue };
            let (mut in_read, mut in_write) = inbound.into_split();
            let (mut out_read, mut out_write) = outbound.into_split();
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 4096];
                while let Ok(n @ 1..) = in_read.read(&mut chunk).await {
                    if out_write.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
            });
        }
    });
}

/// The publisher's node dies while the way to the subscriber's node is
/// slow: a PUBACK means the subscriber's node has the message, so every
/// message the publisher saw acknowledged arrives. (Acknowledged at once,
/// the messages still queued on the dead node for the slow link were lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puback_means_the_subscribers_node_has_the_message_even_if_the_publishers_node_dies() {
    let dir = tempfile::tempdir().unwrap();
    let [grpc, port_a, port_c, peer_a, proxy_a] = common::free_ports();
    let cp = controlplane(1, "127.0.0.1", grpc, dir.path(), true);
    let url = format!("http://127.0.0.1:{grpc}");
    wait_for("the control plane", Duration::from_secs(15), || (leader_of(&url) == Some(1)).then_some(()))
        .await;
    let token = token_file(dir.path(), "member.token", MEMBER_TOKEN);
    let members = url.trim_start_matches("http://").to_string();
    // Node A is reached through the slow proxy.
    slow_proxy(format!("{}:{proxy_a}", IPS[0]).parse().unwrap(), format!("{}:{peer_a}", IPS[0])).await;
    let peer_bind = format!("dataplane.peer_bind={}:{peer_a}", IPS[0]);
    let advertise = format!("dataplane.peer_advertise={}:{proxy_a}", IPS[0]);
    let extra = ["auth.allow_anonymous=allow", peer_bind.as_str(), advertise.as_str()];
    let _a = dataplane_on(1, IPS[0], port_a, &members, dir.path(), &token, &extra);
    let mut c =
        dataplane_on(2, IPS[2], port_c, &members, dir.path(), &token, &["auth.allow_anonymous=allow"]);
    let fleet = Fleet { _cp: cp, url, nodes: Vec::new(), ports: vec![port_a, 0, port_c], _dir: dir };

    let mut subscriber = fleet.client(0, "sub-a").await;
    subscriber.subscribe("slow/#", QoS::AtLeastOnce).await;
    let mut publisher = fleet.client(2, "pub-c").await;
    wait_route(&mut publisher, &mut subscriber, "slow/probe").await;

    let reader = tokio::spawn(async move {
        let mut got = std::collections::HashSet::new();
        while let Some(packet) = subscriber.recv_within(Duration::from_secs(10)).await {
            if let Packet::Publish(publish) = packet {
                if let Some(packet_id) = publish.packet_id {
                    subscriber.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
                }
                got.insert(String::from_utf8_lossy(&publish.payload[..8]).to_string());
            }
        }
        got
    });

    // Publish 1 KB messages one at a time for 3 s, then kill the publisher's node.
    let started = Instant::now();
    let mut acknowledged = Vec::new();
    let mut n = 0u32;
    let mut killed = false;
    loop {
        if !killed && started.elapsed() > Duration::from_secs(3) {
            c.kill9();
            killed = true;
        }
        let mut payload = format!("m{n:07}").into_bytes();
        payload.resize(1024, b'.');
        let packet_id = (n % 60000 + 1) as u16;
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: "slow/x".into(),
            packet_id: Some(packet_id),
            payload: payload.into(),
            ..Default::default()
        };
        publisher.send(&Packet::Publish(publish)).await;
        match publisher.recv_within(Duration::from_secs(40)).await {
            Some(Packet::PubAck(ack)) if ack.packet_id == packet_id => acknowledged.push(format!("m{n:07}")),
            None => break,
            Some(other) => panic!("expected a PUBACK, got {other:?}"),
        }
        n += 1;
    }
    assert!(killed, "the publisher's node went away before it was killed");
    assert!(!acknowledged.is_empty(), "no message was acknowledged");
    let got = reader.await.unwrap();
    let lost: Vec<&String> = acknowledged.iter().filter(|p| !got.contains(*p)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages never reached node A (first: {:?})",
        lost.len(),
        acknowledged.len(),
        lost.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_right_after_suback_on_another_node_arrives() {
    let fleet = fleet(3).await;
    let mut subscriber = fleet.client(0, "after-sub").await;
    let mut publishers = [fleet.client(1, "after-pub-b").await, fleet.client(2, "after-pub-c").await];
    let rounds = 30;
    let mut missed = Vec::new();
    let mut suback = Vec::new();
    for i in 0..rounds {
        // A filter no node has a route for yet; every other round a shared
        // group no node has a member of yet.
        let topic = format!("after/{i}");
        let filter = if i % 2 == 0 { topic.clone() } else { format!("$share/g{i}/{topic}") };
        let started = Instant::now();
        subscriber.subscribe(&filter, QoS::AtLeastOnce).await;
        suback.push(started.elapsed());
        let publisher = &mut publishers[i % 2];
        publish_acked(publisher, &topic, format!("m{i}").into_bytes(), QoS::AtLeastOnce, 1).await;
        match subscriber.recv_within(Duration::from_secs(3)).await {
            Some(Packet::Publish(publish)) => {
                assert_eq!(publish.payload, format!("m{i}").as_bytes());
                if let Some(packet_id) = publish.packet_id {
                    subscriber.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
                }
            }
            None => missed.push(filter),
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    suback.sort();
    eprintln!(
        "SUBACK with a new route announced to 2 nodes: p50 {:?}, max {:?}",
        suback[suback.len() / 2],
        suback[suback.len() - 1]
    );
    assert!(missed.is_empty(), "published right after SUBACK on another node, never arrived: {missed:?}");
    subscriber.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_across_three_nodes_gets_each_message_once_spread_evenly() {
    let fleet = fleet(3).await;
    let mut members = Vec::new();
    for node in 0..3 {
        for m in 0..2 {
            let mut client = fleet.client(node, &format!("worker-{node}-{m}")).await;
            client.subscribe("$share/work/jobs/+", QoS::AtLeastOnce).await;
            members.push(client);
        }
    }
    // Publishers on two of the three nodes: a group picked per node would
    // leave the third node's members idle.
    let mut publishers = [fleet.client(0, "jobs-a").await, fleet.client(1, "jobs-b").await];
    let url = fleet.url.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let groups = share_groups(&url).await.unwrap_or_default();
        let full = groups.iter().any(|((g, f), m)| g == "work" && f == "jobs/+" && m.len() == 6);
        if full {
            break;
        }
        assert!(Instant::now() < deadline, "the control plane never listed six members: {groups:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every node hears of the full group within its watch stream's delay.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let per_node = 180;
    for (p, publisher) in publishers.iter_mut().enumerate() {
        for n in 0..per_node {
            let payload = format!("{p}-{n:03}").into_bytes();
            publish_acked(publisher, &format!("jobs/{n}"), payload, QoS::AtLeastOnce, (n + 1) as u16).await;
        }
    }
    let mut seen = std::collections::HashMap::new();
    let mut counts = Vec::new();
    for (i, member) in members.iter_mut().enumerate() {
        let mut count = 0;
        while let Some(packet) = member.recv_within(Duration::from_millis(700)).await {
            let Packet::Publish(publish) = packet else { panic!("member {i}: unexpected {packet:?}") };
            if let Some(packet_id) = publish.packet_id {
                member.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
            }
            let payload = String::from_utf8_lossy(&publish.payload).to_string();
            if let Some(first) = seen.insert(payload.clone(), i) {
                panic!("{payload} went to members {first} and {i}");
            }
            count += 1;
        }
        member.expect_silence(Duration::from_millis(100)).await;
        counts.push(count);
    }
    assert_eq!(seen.len(), 2 * per_node, "every message reached one member: counts {counts:?}");
    // Round robin per group over the whole cluster, on each publishing
    // node: 180 messages from each of two nodes over six members.
    assert!(counts.iter().all(|&c| c == 60), "an uneven spread: {counts:?}");
}

/// Subscribes a new client on node `i` to `filter` and returns the
/// retained messages it gets (topic, payload) within `wait`.
async fn retained_on(
    fleet: &Fleet,
    i: usize,
    client_id: &str,
    filter: &str,
    wait: Duration,
) -> Vec<(String, String)> {
    let mut client = fleet.client(i, client_id).await;
    client.subscribe(filter, QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    while let Some(packet) = client.recv_within(wait).await {
        let Packet::Publish(publish) = packet else { panic!("unexpected {packet:?}") };
        assert!(publish.retain, "a retained message keeps its flag: {publish:?}");
        if let Some(packet_id) = publish.packet_id {
            client.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
        }
        got.push((publish.topic.clone(), String::from_utf8_lossy(&publish.payload).to_string()));
    }
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_reach_every_node_and_outlive_the_node_they_were_set_on() {
    let mut fleet = fleet(3).await;
    let mut publisher = fleet.client(0, "retainer-a").await;
    let retained = |topic: &str, payload: &str| Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: topic.into(),
        packet_id: Some(1),
        payload: payload.as_bytes().to_vec().into(),
        ..Default::default()
    };
    for (topic, payload) in [("cfg/a", "v1"), ("cfg/gone", "x"), ("cfg/a", "v2"), ("cfg/gone", "")] {
        publisher.send(&Packet::Publish(retained(topic, payload))).await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(a)) if a.reason.is_success()));
    }
    let expected = vec![("cfg/a".to_string(), "v2".to_string())];
    // Acknowledged: every live node holds it (and the deletion) already.
    assert_eq!(retained_on(&fleet, 1, "late-b", "cfg/#", Duration::from_millis(500)).await, expected);
    assert_eq!(retained_on(&fleet, 2, "late-c", "cfg/#", Duration::from_millis(500)).await, expected);

    // Many retained publishes, and the control plane's log hardly moves
    // (no Raft write per retained message).
    let before = state_index(&fleet.url).await.expect("index");
    for n in 0..500u16 {
        let publish = Publish { retain: true, ..retained(&format!("bulk/{n}"), "r") };
        publisher.send(&Packet::Publish(Publish { qos: QoS::AtMostOnce, packet_id: None, ..publish })).await;
    }
    // Acknowledged once every node has it, and the ones before it (in order).
    publisher.send(&Packet::Publish(retained("bulk/last", "r"))).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubAck(a)) if a.reason.is_success()));
    let after = state_index(&fleet.url).await.expect("index");
    assert!(after - before < 100, "500 retained publishes moved the Raft log by {}", after - before);
    drop(publisher);

    // The node they were set on dies: the others still have them.
    fleet.nodes[0].kill9();
    assert_eq!(retained_on(&fleet, 1, "after-b", "cfg/#", Duration::from_millis(500)).await, expected);
    // It comes back empty, and takes them from the others.
    fleet.nodes[0].restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let got =
            retained_on(&fleet, 0, &format!("back-a-{attempt}"), "cfg/#", Duration::from_millis(300)).await;
        if got == expected {
            break;
        }
        assert!(got.is_empty(), "node A came back with {got:?}");
        assert!(Instant::now() < deadline, "node A never took the retained messages back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bulk = retained_on(&fleet, 0, "bulk-a", "bulk/#", Duration::from_millis(500)).await;
    // (Fewer than a session's queue limit of 1,000, so that one client gets all.)
    let missing: Vec<String> = (0..500)
        .map(|n| format!("bulk/{n}"))
        .chain(["bulk/last".to_string()])
        .filter(|t| !bulk.iter().any(|(topic, _)| topic == t))
        .collect();
    assert!(missing.is_empty(), "node A did not take back {missing:?}");
    assert_eq!(bulk.len(), 501);
}

/// Connects `client_id` to node `i` with Clean Start 0 and a session that
/// outlives the connection; returns the client and whether a session was
/// present.
async fn connect_persistent(fleet: &Fleet, i: usize, client_id: &str) -> (Client, bool) {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id, false);
    connect.properties.session_expiry_interval = Some(300);
    let (client, ack) = Client::connect_with_at(IPS[i], fleet.ports[i], connect).await;
    assert!(ack.reason.is_success(), "CONNACK {ack:?}");
    (client, ack.session_present)
}

/// Receives publishes until `wait` passes with none; acknowledges each one
/// unless `ack` is false; returns (payload, dup) in arrival order.
async fn drain(client: &mut Client, ack: bool, wait: Duration) -> Vec<(String, bool)> {
    let mut got = Vec::new();
    while let Some(packet) = client.recv_within(wait).await {
        let Packet::Publish(publish) = packet else { panic!("unexpected {packet:?}") };
        if let (true, Some(packet_id)) = (ack, publish.packet_id) {
            client.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
        }
        got.push((String::from_utf8_lossy(&publish.payload).to_string(), publish.dup));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moving_between_nodes_keeps_its_session_and_its_id_is_live_once() {
    let fleet = fleet(3).await;
    let mut publisher = fleet.client(2, "move-pub").await;
    let (mut on_a, present) = connect_persistent(&fleet, 0, "mover").await;
    assert!(!present);
    on_a.subscribe("move/#", QoS::AtLeastOnce).await;
    wait_route(&mut publisher, &mut on_a, "move/probe").await;

    // Ten messages reach the client on A; it acknowledges none of them.
    for n in 0..10u16 {
        publish_acked(&mut publisher, "move/x", format!("m{n:02}").into_bytes(), QoS::AtLeastOnce, n + 1)
            .await;
    }
    let unacked = drain(&mut on_a, false, Duration::from_millis(500)).await;
    assert_eq!(unacked.len(), 10, "{unacked:?}");

    // The same client id connects on B while the connection on A is live.
    let (mut on_b, present) = connect_persistent(&fleet, 1, "mover").await;
    assert!(present, "the session moved from A to B");
    on_a.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    // In flight on A: sent again, in order, marked DUP.
    let resent = drain(&mut on_b, true, Duration::from_millis(500)).await;
    let expected: Vec<(String, bool)> = (0..10).map(|n| (format!("m{n:02}"), true)).collect();
    assert_eq!(resent, expected, "the unacknowledged messages follow the session");

    // Offline on B: queued there, then the client comes back on C.
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 10..20u16 {
        publish_acked(&mut publisher, "move/x", format!("m{n:02}").into_bytes(), QoS::AtLeastOnce, n + 1)
            .await;
    }
    let (mut on_c, present) = connect_persistent(&fleet, 2, "mover").await;
    assert!(present, "the parked session moved from B to C");
    // And while it moves on, more messages, from a publisher on A.
    let mut publisher_a = fleet.client(0, "move-pub-a").await;
    for n in 20..30u16 {
        publish_acked(&mut publisher_a, "move/x", format!("m{n:02}").into_bytes(), QoS::AtLeastOnce, n + 1)
            .await;
    }
    let got = drain(&mut on_c, true, Duration::from_millis(700)).await;
    let payloads: Vec<String> = got.into_iter().map(|(p, _)| p).collect();
    let expected: Vec<String> = (10..30).map(|n| format!("m{n:02}")).collect();
    assert_eq!(payloads, expected, "queued while it moved, then new: each once, in order");
    on_c.expect_silence(Duration::from_millis(200)).await;

    // The subscription lives on C only now: B has no route left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while has_route(&fleet.url, "move/#", 2).await != Some(false)
        || has_route(&fleet.url, "move/#", 1).await != Some(false)
    {
        assert!(Instant::now() < deadline, "old nodes kept their routes: {:?}", routes(&fleet.url).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether `client` is told nothing within `wait` and then still answers
/// a PINGREQ (a closed connection is not live).
async fn stays_live(client: &mut Client, wait: Duration) -> bool {
    if client.recv_within(wait).await.is_some() {
        return false;
    }
    client.send(&Packet::PingReq).await;
    matches!(client.recv_within(Duration::from_secs(2)).await, Some(Packet::PingResp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_id_connecting_on_two_nodes_at_once_ends_with_one_live_connection() {
    let fleet = fleet(2).await;
    for round in 0..8 {
        let id = format!("twin-{round}");
        let connect = |i: usize| {
            let mut packet = connect_packet(ProtocolVersion::V5, &id, round % 2 == 0);
            packet.properties.session_expiry_interval = Some(60);
            Client::connect_with_at(IPS[i], fleet.ports[i], packet)
        };
        let ((mut a, ack_a), (mut b, ack_b)) = tokio::join!(connect(0), connect(1));
        let mut live = 0;
        for (client, ack) in [(&mut a, &ack_a), (&mut b, &ack_b)] {
            if ack.reason.is_success() && stays_live(client, Duration::from_millis(1500)).await {
                live += 1;
            }
        }
        assert_eq!(live, 1, "round {round}: CONNACKs {:?} and {:?}", ack_a.reason, ack_b.reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_claimed_from_two_nodes_at_once_survives_on_the_newest() {
    let fleet = fleet(3).await;
    let mut publisher = fleet.client(0, "race-pub").await;
    for round in 0..4u16 {
        let id = format!("racer-{round}");
        let (mut first, _) = connect_persistent(&fleet, 0, &id).await;
        first.subscribe(&format!("race/{round}"), QoS::AtLeastOnce).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for n in 0..5u16 {
            let payload = format!("r{round}-{n}").into_bytes();
            publish_acked(&mut publisher, &format!("race/{round}"), payload, QoS::AtLeastOnce, n + 1).await;
        }
        // The client comes back on B and, a moment later, on C. With no
        // delay (round 0) either may be the newer, and the older one may be
        // refused (0x89) rather than taken over: what matters is that one
        // survives with the whole queue.
        let on_b = async {
            let mut connect = connect_packet(ProtocolVersion::V5, &id, false);
            connect.properties.session_expiry_interval = Some(300);
            Client::connect_with_at(IPS[1], fleet.ports[1], connect).await
        };
        let on_c = async {
            tokio::time::sleep(Duration::from_millis(u64::from(round) * 3)).await;
            let mut connect = connect_packet(ProtocolVersion::V5, &id, false);
            connect.properties.session_expiry_interval = Some(300);
            Client::connect_with_at(IPS[2], fleet.ports[2], connect).await
        };
        let ((mut b, ack_b), (mut c, ack_c)) = tokio::join!(on_b, on_c);
        let mut survivors = Vec::new();
        for (name, client) in [("B", &mut b), ("C", &mut c)] {
            // What it gets until it is told to go (0x8E) or nothing more comes.
            let mut got = Vec::new();
            let mut closed = false;
            while let Some(packet) = client.recv_within(Duration::from_millis(800)).await {
                match packet {
                    Packet::Publish(publish) => {
                        if let Some(packet_id) = publish.packet_id {
                            client.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
                        }
                        got.push(String::from_utf8_lossy(&publish.payload).to_string());
                    }
                    Packet::Disconnect(d) if d.reason == ReasonCode::SESSION_TAKEN_OVER => closed = true,
                    other => panic!("{name}: unexpected {other:?}"),
                }
            }
            client.send(&Packet::PingReq).await;
            let live =
                !closed && matches!(client.recv_within(Duration::from_secs(2)).await, Some(Packet::PingResp));
            if live {
                survivors.push((name, got));
            }
        }
        assert_eq!(
            survivors.len(),
            1,
            "round {round}: live {survivors:?} (CONNACKs: B {:?}, C {:?})",
            ack_b.reason,
            ack_c.reason
        );
        let payloads: Vec<String> = survivors[0].1.clone();
        let expected: Vec<String> = (0..5).map(|n| format!("r{round}-{n}")).collect();
        assert_eq!(payloads, expected, "round {round}: the session's queue, on {}", survivors[0].0);
    }
}

/// The peer-link address a node was started with.
fn peer_address(node: &Process) -> String {
    node.args
        .iter()
        .find_map(|a| a.strip_prefix("dataplane.peer_bind="))
        .expect("a peer_bind setting")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_links_over_mutual_tls_deliver_and_refuse_strangers() {
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let common::TestPki { ca, cert, key } = common::test_pki("fleet", &IPS);
    let (ca, cert, key) = (write("ca.pem", &ca), write("peer.pem", &cert), write("peer.key", &key));
    let extra = vec![
        "dataplane.peer_tls.enabled=true".to_string(),
        format!("dataplane.peer_tls.certfile={cert}"),
        format!("dataplane.peer_tls.keyfile={key}"),
        format!("dataplane.peer_tls.cacertfile={ca}"),
    ];
    let fleet = fleet_with(2, &extra).await;
    let mut subscriber = fleet.client(0, "tls-sub").await;
    let mut publisher = fleet.client(1, "tls-pub").await;
    subscriber.subscribe("tls/#", QoS::AtLeastOnce).await;
    wait_route(&mut publisher, &mut subscriber, "tls/probe").await;
    publish_acked(&mut publisher, "tls/x", b"over-tls".to_vec(), QoS::AtLeastOnce, 1).await;
    assert_eq!(&subscriber.expect_publish().await.payload[..], b"over-tls");

    // With the cluster's secret, a peer is served only over TLS with a
    // certificate from the cluster's CA.
    use proto::peer::peer_client::PeerClient;
    let secret = snapshot(&fleet.url).await.expect("state").peer_secret;
    let token = proto::auth::BearerToken::new(Some(&secret)).unwrap();
    let address = peer_address(&fleet.nodes[0]);
    let batch = proto::peer::Batch { from_node: 9, epoch: 1, seq: 1, messages: Vec::new() };
    let served = |endpoint: tonic::transport::Endpoint| {
        let (token, batch) = (token.clone(), batch.clone());
        async move {
            let Ok(channel) = endpoint.connect().await else { return false };
            let mut client = PeerClient::with_interceptor(channel, token);
            let Ok(response) = client.forward(futures_util::stream::iter([batch])).await else {
                return false;
            };
            matches!(response.into_inner().message().await, Ok(Some(ack)) if ack.seq == 1)
        }
    };
    let tls_as = |cert: &str, key: &str| {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca).unwrap()))
            .identity(tonic::transport::Identity::from_pem(cert, key));
        tonic::transport::Endpoint::from_shared(format!("https://{address}"))
            .unwrap()
            .tls_config(config)
            .unwrap()
    };
    let member = tls_as(&std::fs::read_to_string(&cert).unwrap(), &std::fs::read_to_string(&key).unwrap());
    assert!(served(member).await, "a peer with the cluster's certificate and secret is served");
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap();
    assert!(!served(plain).await, "a plaintext peer was served");
    let common::TestPki { cert: stranger_cert, key: stranger_key, .. } = common::test_pki("stranger", &IPS);
    assert!(
        !served(tls_as(&stranger_cert, &stranger_key)).await,
        "a peer with another CA's certificate was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_too_large_for_one_message_reaches_a_new_node_in_parts() {
    use proto::controlplane::control_plane_client::ControlPlaneClient;
    use proto::controlplane::{HeartbeatRequest, RouteBatch};
    let mut fleet = fleet(1).await;
    let channel =
        tonic::transport::Endpoint::from_shared(fleet.url.clone()).unwrap().connect().await.unwrap();
    let token = proto::auth::BearerToken::new(Some(MEMBER_TOKEN)).unwrap();
    let mut client = ControlPlaneClient::with_interceptor(channel, token);
    // 120,000 routes of a node that is alive (it heartbeats) but has no
    // peer address: about 4 MB of routes, past the 2 MiB a snapshot part holds.
    let fake = 77;
    let mut beats = client.clone();
    let heartbeat = tokio::spawn(async move {
        loop {
            let request = HeartbeatRequest { node_id: fake, address: String::new(), ..Default::default() };
            let _ = beats.heartbeat(request).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let total = 120_000;
    for chunk in 0..12 {
        let add = (chunk * 10_000..(chunk + 1) * 10_000).map(|i| format!("bulk/device-{i:07}/cmd")).collect();
        client.register_routes(RouteBatch { node_id: fake, add, ..Default::default() }).await.unwrap();
    }
    let held = snapshot(&fleet.url).await.expect("state").routes.len();
    assert!(held >= total, "the control plane holds {held} routes");
    // It comes in parts: the first event holds none of them.
    let mut stream = client
        .watch(proto::controlplane::WatchRequest { node_id: 0, last_index: None })
        .await
        .unwrap()
        .into_inner();
    match stream.message().await.unwrap().and_then(|e| e.event) {
        Some(proto::controlplane::watch_event::Event::Snapshot(first)) => {
            assert!(first.parts_follow && first.routes.is_empty(), "a {held}-route snapshot in one message")
        }
        other => panic!("expected a snapshot first, got {other:?}"),
    }
    drop(stream);

    // A node that joins now takes the whole state in parts.
    let dir = fleet._dir.path().to_path_buf();
    let token = dir.join("member.token");
    fleet.nodes.push(start_node(1, common::free_port(), &fleet.url, &dir, &token, &[]));
    let port = fleet.nodes[1]
        .args
        .iter()
        .find_map(|a| a.strip_prefix("listeners.tcp.bind=").and_then(|b| b.rsplit(':').next()))
        .and_then(|p| p.parse::<u16>().ok())
        .expect("node 2's port");
    fleet.ports.push(port);
    let mut watcher = fleet.client(1, "parts-watcher").await;
    watcher.subscribe("$SYS/brokers/dp2/stats/routes/remote/count", QoS::AtMostOnce).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = 0u64;
    while seen < total as u64 {
        if let Some(Packet::Publish(p)) = watcher.recv_within(Duration::from_secs(2)).await {
            seen = String::from_utf8_lossy(&p.payload).parse().unwrap_or(0);
        }
        assert!(Instant::now() < deadline, "node 2 knows {seen} of {total} remote routes");
    }
    heartbeat.abort();
}

/// Reads `count` messages on `topic`-style payloads `n{i}`, slowly (a pause
/// every `every` messages), acknowledging QoS 1; stops early, saying why,
/// on silence or a close.
async fn read_slowly(
    mut client: Client,
    count: usize,
    every: usize,
    pause: Duration,
) -> Result<Vec<u32>, String> {
    let mut got = Vec::new();
    while got.len() < count {
        let asked = Instant::now();
        match client.recv_within(Duration::from_secs(10)).await {
            Some(Packet::Publish(publish)) => {
                if let (QoS::AtLeastOnce, Some(packet_id)) = (publish.qos, publish.packet_id) {
                    client.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
                }
                let text =
                    String::from_utf8_lossy(&publish.payload[..publish.payload.len().min(12)]).to_string();
                let n = text.trim_start_matches('n').split('.').next().and_then(|n| n.parse().ok());
                got.push(n.ok_or_else(|| format!("unexpected payload {text:?}"))?);
                if got.len() % every == 0 {
                    tokio::time::sleep(pause).await;
                }
            }
            Some(other) => return Err(format!("unexpected {other:?} after {} messages", got.len())),
            None => {
                let why = if asked.elapsed() < Duration::from_secs(9) {
                    "the connection closed"
                } else {
                    "10 s of silence"
                };
                return Err(format!("{why} after {} of {count} messages (last {:?})", got.len(), got.last()));
            }
        }
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_on_another_node_slows_qos1_publishers_instead_of_losing_messages() {
    // A queue of 50 per subscriber: without back-pressure across the link,
    // the subscriber's node takes (and drops) what its queue cannot hold.
    let fleet = fleet_with(2, &["session.max_queued_messages=50".to_string()]).await;
    let mut subscriber = fleet.client(0, "slow-sub").await;
    subscriber.subscribe("bp/q1", QoS::AtLeastOnce).await;
    let mut publisher = fleet.client(1, "fast-pub").await;
    wait_route(&mut publisher, &mut subscriber, "bp/q1").await;
    const COUNT: usize = 2000;
    let reader = tokio::spawn(read_slowly(subscriber, COUNT, 10, Duration::from_millis(5)));
    // A window of 16 QoS 1 messages in flight.
    let (mut next, mut acked, mut in_flight) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    while acked < COUNT {
        while in_flight < 16 && next < COUNT {
            let payload = format!("n{next}.").into_bytes();
            let publish = Publish {
                qos: QoS::AtLeastOnce,
                topic: "bp/q1".into(),
                packet_id: Some((next % 60_000) as u16 + 1),
                payload: payload.into(),
                ..Default::default()
            };
            publisher.send(&Packet::Publish(publish)).await;
            next += 1;
            in_flight += 1;
        }
        match publisher.recv_within(Duration::from_secs(10)).await {
            Some(Packet::PubAck(ack)) => {
                assert!(ack.reason.is_success(), "{ack:?}");
                acked += 1;
                in_flight -= 1;
            }
            other => panic!("publisher: after {acked} PUBACKs, {other:?}"),
        }
    }
    let publishing = started.elapsed();
    let got = reader.await.expect("reader").unwrap_or_else(|error| panic!("subscriber: {error}"));
    assert_eq!(got, (0..COUNT as u32).collect::<Vec<_>>(), "every message once, in order");
    println!("{COUNT} QoS 1 messages to a slow subscriber on another node: published in {publishing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_peer_link_slows_qos0_publishers_instead_of_dropping() {
    // A link that holds 200 messages and a queue of 100: a publisher that
    // outruns the subscriber's node overflows both without back-pressure.
    let extra =
        ["session.max_queued_messages=100".to_string(), "dataplane.peer_queue_messages=200".to_string()];
    let fleet = fleet_with(2, &extra).await;
    let mut subscriber = fleet.client(0, "slow-sub0").await;
    subscriber.subscribe("bp/q0", QoS::AtMostOnce).await;
    let mut publisher = fleet.client(1, "fast-pub0").await;
    wait_route(&mut publisher, &mut subscriber, "bp/q0").await;
    const COUNT: usize = 5000;
    let reader = tokio::spawn(read_slowly(subscriber, COUNT, 20, Duration::from_millis(5)));
    let padding = "x".repeat(1000);
    for n in 0..COUNT {
        publisher.publish("bp/q0", format!("n{n}.{padding}").as_bytes(), QoS::AtMostOnce, 0).await;
    }
    let got = reader.await.expect("reader").unwrap_or_else(|error| panic!("subscriber: {error}"));
    assert_eq!(got, (0..COUNT as u32).collect::<Vec<_>>(), "every message once, in order");
    // The publisher is still welcome.
    publisher.send(&Packet::PingReq).await;
    assert!(matches!(publisher.recv_within(Duration::from_secs(5)).await, Some(Packet::PingResp)));
}

/// A node that starts finds in the control plane's snapshot a route held
/// for it that it does not serve (left by an earlier run of the node): it
/// withdraws it, and registers what it does serve. (A node does not keep
/// its own routes in its table of remote routes, so this reads them from
/// the snapshot.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_node_withdraws_the_routes_held_for_it_that_it_does_not_serve() {
    use proto::controlplane::control_plane_client::ControlPlaneClient;
    use proto::controlplane::RouteBatch;
    let mut fleet = fleet(1).await;
    let channel =
        tonic::transport::Endpoint::from_shared(fleet.url.clone()).unwrap().connect().await.unwrap();
    let token = proto::auth::BearerToken::new(Some(MEMBER_TOKEN)).unwrap();
    let mut client = ControlPlaneClient::with_interceptor(channel, token);
    // Node 2 is not running: its earlier run's route.
    let add = vec!["stale/#".to_string()];
    client.register_routes(RouteBatch { node_id: 2, add, ..Default::default() }).await.unwrap();
    assert_eq!(has_route(&fleet.url, "stale/#", 2).await, Some(true));

    let dir = fleet._dir.path().to_path_buf();
    let token = dir.join("member.token");
    let port = common::free_port();
    fleet.nodes.push(start_node(1, port, &fleet.url, &dir, &token, &[]));
    fleet.ports.push(port);
    let mut subscriber = fleet.client(1, "fresh-sub").await;
    subscriber.subscribe("fresh/#", QoS::AtLeastOnce).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while has_route(&fleet.url, "stale/#", 2).await != Some(false)
        || has_route(&fleet.url, "fresh/#", 2).await != Some(true)
    {
        assert!(Instant::now() < deadline, "node 2's routes: {:?}", routes(&fleet.url).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
