//! A partition: one data-plane node in its own network namespace (a veth
//! pair to the host), cut off from the control plane and the other nodes
//! under QoS 1 load, then healed. Nothing acknowledged to a publisher on
//! the majority side is lost for subscribers there; while cut off, the same
//! client id gets a connection on each side, and after the heal the older
//! one is closed; routes and shared groups converge (messages flow both
//! ways again, and a shared group's messages reach one member each). A node
//! cut off for longer than the grace period (removed from the cluster,
//! what was buffered for it dropped) gets, once back, the retained messages
//! set meanwhile.
//!
//! Needs root (`ip netns`, `ip link`), as this machine and its CI have.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::{connect_packet, Client};
use mqtt_codec::{Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode};

/// A network namespace joined to the host by a veth pair: the host side is
/// `10.251.N.1`, the namespace side `10.251.N.2`. Removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    inner_ip: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip (iproute2)");
    assert!(status.success(), "`ip {}` failed: this test needs root and iproute2", args.join(" "));
}

impl Netns {
    /// `tag` tells apart the namespaces of tests running at once (0 or 1).
    fn create(tag: u32) -> Netns {
        let n = std::process::id() % 100 + 20 + 100 * tag;
        let name = format!("mqttd-part-{n}");
        let host_if = format!("mqp{n}h");
        let inner_if = format!("mqp{n}n");
        // Left over from an earlier run that was killed.
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip").args(["link", "del", &host_if]).status();
        let (host_ip, inner_ip) = (format!("10.251.{n}.1"), format!("10.251.{n}.2"));
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &inner_if]);
        ip(&["link", "set", &inner_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "addr", "add", &format!("{inner_ip}/24"), "dev", &inner_if]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &inner_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Netns { name, host_if, host_ip, inner_ip }
    }

    fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
        // The address's route comes back with the link.
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
    }
}

async fn client_at(ip: &str, port: u16, client_id: &str, clean: bool) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect((ip, port)).await.is_ok() {
            let mut connect = connect_packet(ProtocolVersion::V5, client_id, clean);
            connect.properties.session_expiry_interval = Some(120);
            let (client, ack) = Client::connect_with_at(ip, port, connect).await;
            if ack.reason.is_success() {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "{ip}:{port} does not let clients in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes probes until `subscriber` gets one, then drains.
async fn wait_route(publisher: &mut Client, subscriber: &mut Client, topic: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        publisher.publish(topic, b"probe", QoS::AtMostOnce, 0).await;
        // Acknowledge what else comes (messages held during a cut), so that
        // the subscriber's window stays open.
        let mut probed = false;
        while let Some(Packet::Publish(p)) = subscriber.recv_within(Duration::from_millis(200)).await {
            if let Some(packet_id) = p.packet_id {
                subscriber.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
            }
            probed |= &p.payload[..] == b"probe";
        }
        if probed {
            break;
        }
        assert!(Instant::now() < deadline, "no route for {topic} within {within:?}");
    }
    while subscriber.recv_within(Duration::from_millis(300)).await.is_some() {}
}

/// Receives until `wait` passes with nothing; acknowledges; returns payloads.
async fn drain(client: &mut Client, wait: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(packet) = client.recv_within(wait).await {
        match packet {
            Packet::Publish(publish) => {
                if let Some(packet_id) = publish.packet_id {
                    client.send(&Packet::PubAck(PubAck { packet_id, ..Default::default() })).await;
                }
                got.push(String::from_utf8_lossy(&publish.payload).to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

fn node_state(url: &str, id: u64) -> Option<String> {
    let status = status(url)?;
    status["dataplane"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_u64() == Some(id))
        .and_then(|n| n["state"].as_str().map(str::to_owned))
}

/// A control plane on the host side of `net`, with a leader.
struct Cluster {
    dir: tempfile::TempDir,
    _cp: Process,
    url: String,
    token: std::path::PathBuf,
    /// Its address for data-plane nodes.
    members: String,
}

async fn control_plane(net: &Netns) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let grpc = common::free_port();
    let cp = controlplane(1, &net.host_ip, grpc, dir.path(), true);
    let url = format!("http://{}:{grpc}", net.host_ip);
    wait_for("the control plane", Duration::from_secs(15), || (leader_of(&url) == Some(1)).then_some(()))
        .await;
    let token = token_file(dir.path(), "member.token", MEMBER_TOKEN);
    let members = format!("{}:{grpc}", net.host_ip);
    Cluster { dir, _cp: cp, url, token, members }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_and_healed_converges_and_loses_nothing_acknowledged() {
    let net = Netns::create(0);
    let Cluster { dir, _cp, url, token, members } = control_plane(&net).await;
    let extra = ["auth.allow_anonymous=allow"];
    let [port_a, port_b, port_x] = common::free_ports();
    let _a = Process::spawn(dataplane_args(1, &net.host_ip, port_a, &members, dir.path(), &token, &extra));
    let _b = Process::spawn(dataplane_args(2, &net.host_ip, port_b, &members, dir.path(), &token, &extra));
    let _x = Process::spawn_in(
        &net.name,
        dataplane_args(3, &net.inner_ip, port_x, &members, dir.path(), &token, &extra),
    );
    let (ha, hx) = (net.host_ip.clone(), net.inner_ip.clone());

    let mut sub_a = client_at(&ha, port_a, "sub-a", true).await;
    let mut sub_x = client_at(&hx, port_x, "sub-x", true).await;
    let mut member_a = client_at(&ha, port_a, "member-a", true).await;
    let mut member_x = client_at(&hx, port_x, "member-x", true).await;
    let mut twin_x = client_at(&hx, port_x, "twin", false).await;
    let mut publisher = client_at(&ha, port_b, "pub-b", true).await;
    sub_a.subscribe("part/#", QoS::AtLeastOnce).await;
    sub_x.subscribe("part/#", QoS::AtLeastOnce).await;
    member_a.subscribe("$share/pg/jobs", QoS::AtLeastOnce).await;
    member_x.subscribe("$share/pg/jobs", QoS::AtLeastOnce).await;
    wait_route(&mut publisher, &mut sub_a, "part/probe", Duration::from_secs(15)).await;
    wait_route(&mut publisher, &mut sub_x, "part/probe", Duration::from_secs(15)).await;
    drain(&mut sub_a, Duration::from_millis(200)).await;

    // Cut node X off; the control plane declares it down.
    net.cut();
    let deadline = Instant::now() + Duration::from_secs(15);
    while node_state(&url, 3).as_deref() != Some("down") {
        assert!(Instant::now() < deadline, "node X was never declared down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Under QoS 1 load on the majority side: every message is acknowledged
    // (X is down, nobody waits for it), and every acknowledged one reaches
    // the subscriber on A.
    let started = Instant::now();
    for n in 0..200u16 {
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: "part/x".into(),
            packet_id: Some(n + 1),
            payload: format!("m{n:03}").into_bytes().into(),
            ..Default::default()
        };
        publisher.send(&Packet::Publish(publish)).await;
        match publisher.recv_within(Duration::from_secs(10)).await {
            Some(Packet::PubAck(ack)) if ack.packet_id == n + 1 && ack.reason == ReasonCode::SUCCESS => {}
            other => panic!("message {n}: no PUBACK while X is cut off: {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20), "PUBACKs waited for the cut-off node");
    for n in 0..20u16 {
        publisher.publish("jobs", format!("j{n:02}").as_bytes(), QoS::AtLeastOnce, 300 + n).await;
    }
    let got_a = drain(&mut sub_a, Duration::from_millis(800)).await;
    let expected: Vec<String> = (0..200).map(|n| format!("m{n:03}")).collect();
    assert_eq!(got_a, expected, "the subscriber on A got every acknowledged message, once, in order");

    // The same client id connects on A while X, cut off, still holds it.
    let mut twin_a = client_at(&ha, port_a, "twin", false).await;

    // Heal. X comes back: the older twin (on X) is closed, the newer stays.
    net.heal();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node_state(&url, 3).as_deref() != Some("up") {
        assert!(Instant::now() < deadline, "node X never came back up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed = twin_x.recv_within(Duration::from_secs(10)).await;
    assert!(
        matches!(&closed, Some(Packet::Disconnect(d)) if d.reason == ReasonCode::SESSION_TAKEN_OVER),
        "the older connection for the id on X: {closed:?}"
    );
    twin_a.send(&Packet::PingReq).await;
    assert!(matches!(twin_a.recv_within(Duration::from_secs(2)).await, Some(Packet::PingResp)));

    // Routes converge both ways.
    let mut publisher_x = client_at(&hx, port_x, "pub-x", true).await;
    wait_route(&mut publisher, &mut sub_x, "part/after", Duration::from_secs(20)).await;
    wait_route(&mut publisher_x, &mut sub_a, "part/after", Duration::from_secs(20)).await;

    // The shared group's messages: each reached one member, the ones held
    // for X's member while it was cut off included.
    let mut jobs = drain(&mut member_a, Duration::from_millis(500)).await;
    jobs.extend(drain(&mut member_x, Duration::from_millis(500)).await);
    jobs.sort();
    let expected: Vec<String> = (0..20).map(|n| format!("j{n:02}")).collect();
    assert_eq!(jobs, expected, "each shared message once, across the partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_set_while_a_node_was_gone_reaches_it_when_it_is_back() {
    let net = Netns::create(1);
    let Cluster { dir, _cp, url, token, members } = control_plane(&net).await;
    let extra = ["auth.allow_anonymous=allow"];
    let [port_b, port_x] = common::free_ports();
    let _b = Process::spawn(dataplane_args(2, &net.host_ip, port_b, &members, dir.path(), &token, &extra));
    let _x = Process::spawn_in(
        &net.name,
        dataplane_args(3, &net.inner_ip, port_x, &members, dir.path(), &token, &extra),
    );
    let (hb, hx) = (net.host_ip.clone(), net.inner_ip.clone());
    let mut publisher = client_at(&hb, port_b, "pub-b", true).await;
    let mut probe_x = client_at(&hx, port_x, "probe-x", true).await;
    probe_x.subscribe("ret/#", QoS::AtMostOnce).await;
    wait_route(&mut publisher, &mut probe_x, "ret/probe", Duration::from_secs(15)).await;
    drop(probe_x);

    // Cut X off until the control plane removes it (down, then the grace
    // period): B gives up its link to X, and what it held for X with it.
    net.cut();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_down = false;
    loop {
        match node_state(&url, 3).as_deref() {
            Some("down") => seen_down = true,
            None if seen_down => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "node X was never removed (seen down: {seen_down})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let keep = Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "ret/kept".into(),
        packet_id: Some(9),
        payload: b"set while X was gone".to_vec().into(),
        ..Default::default()
    };
    publisher.send(&Packet::Publish(keep)).await;
    match publisher.recv_within(Duration::from_secs(10)).await {
        Some(Packet::PubAck(ack)) if ack.packet_id == 9 && ack.reason.is_success() => {}
        other => panic!("retained publish while X is gone: {other:?}"),
    }

    net.heal();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut reader = client_at(&hx, port_x, &format!("reader-{attempt}"), true).await;
        reader.subscribe("ret/kept", QoS::AtMostOnce).await;
        match reader.recv_within(Duration::from_millis(500)).await {
            Some(Packet::Publish(p)) if p.retain && &p.payload[..] == b"set while X was gone" => break,
            Some(other) => panic!("reading ret/kept on X: {other:?}"),
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "the retained message set while X was gone never reached it (X is {:?})",
            node_state(&url, 3)
        );
    }
}
