//! A real cluster: three control-plane processes and data-plane processes on
//! 127.0.0.x, formed and provisioned with `mqttctl`, driven by MQTT clients,
//! and broken on purpose (kill -9 of the leader, of every control-plane
//! node, of a data-plane node).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::{connect_packet, Client};
use mqtt_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_plane_nodes_survive_failures_and_data_planes_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let ports: [u16; 3] = common::free_ports();
    let urls: Vec<String> = ips.iter().zip(ports).map(|(ip, port)| format!("http://{ip}:{port}")).collect();
    let members =
        ips.iter().zip(ports).map(|(ip, port)| format!("{ip}:{port}")).collect::<Vec<_>>().join(",");
    let mut cps: Vec<Process> =
        (0..3).map(|i| controlplane(i as u64 + 1, ips[i], ports[i], dir.path(), i == 0)).collect();

    // Form the cluster with mqttctl.
    wait_for("node 1 to lead", Duration::from_secs(15), || (leader_of(&urls[0]) == Some(1)).then_some(()))
        .await;
    for url in &urls[1..] {
        wait_for("the new node to answer", Duration::from_secs(10), || status(url).map(|_| ())).await;
        let (ok, _, err) = mqttctl(&urls[0], &["cluster", "join", url]);
        assert!(ok, "join {url}: {err}");
    }
    let full = status(&urls[0]).unwrap();
    let voters = full["controlplane"].as_array().unwrap();
    assert_eq!(voters.len(), 3, "{full}");

    // A data-plane node following the cluster; anonymous clients refused.
    let [mqtt_port, mqtt_port_2] = common::free_ports();
    let mut dp = dataplane(21, mqtt_port, &members, dir.path());
    wait_for("the data plane to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", mqtt_port)).ok().map(|_| ())
    })
    .await;

    // Provision through a follower: a user and an ACL rule.
    let follower = &urls[1];
    let (ok, _, err) = mqttctl(follower, &["users", "add", "alice", "--password", "secret"]);
    assert!(ok, "users add via follower: {err}");
    let (ok, _, err) = mqttctl(
        follower,
        &["acl", "add", "--deny", "--action", "publish", "--topic", "forbidden/#", "--all"],
    );
    assert!(ok, "acl add via follower: {err}");
    let mut alice = wait_login(mqtt_port, "alice", "secret").await;
    let (_, reason) = connect_as(mqtt_port, "wrong", "alice", "nope").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_, reason) =
        Client::connect_with(mqtt_port, connect_packet(ProtocolVersion::V5, "anon", true)).await;
    assert_eq!(reason.reason, ReasonCode::NOT_AUTHORIZED);
    alice.subscribe("news/#", QoS::AtLeastOnce).await;
    // The ACL rule arrives with its own delta: publish until it applies.
    let deadline = Instant::now() + Duration::from_secs(10);
    for packet_id in 1.. {
        let denied = Publish {
            qos: QoS::AtLeastOnce,
            topic: "forbidden/x".into(),
            packet_id: Some(packet_id),
            payload: "no".into(),
            ..Default::default()
        };
        alice.send(&Packet::Publish(denied)).await;
        let reason = match alice.recv().await {
            Some(Packet::PubAck(ack)) => ack.reason,
            other => panic!("expected PUBACK, got {other:?}"),
        };
        if reason == ReasonCode::NOT_AUTHORIZED {
            break;
        }
        assert!(Instant::now() < deadline, "the ACL rule never applied (last reason {reason:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kill -9 the leader: a new one is elected and no committed write is lost.
    let old_leader = leader_of(&urls[1]).expect("a leader");
    cps[old_leader as usize - 1].kill9();
    let survivor =
        urls.iter().enumerate().find(|(i, _)| *i as u64 + 1 != old_leader).map(|(_, u)| u.clone()).unwrap();
    let new_leader = wait_for("a new leader", Duration::from_secs(20), || {
        leader_of(&survivor).filter(|id| *id != old_leader)
    })
    .await;
    let (ok, out, _) = mqttctl(&survivor, &["--json", "users", "list"]);
    assert!(ok && out.contains("alice"), "alice survived the leader's death: {out}");
    let (ok, _, err) = mqttctl(&survivor, &["users", "add", "bob", "--password", "pw2"]);
    assert!(ok, "write after failover (leader {new_leader}): {err}");
    drop(wait_login(mqtt_port, "bob", "pw2").await);

    // The old leader restarts from its data directory and catches up.
    cps[old_leader as usize - 1].restart();
    let old_url = urls[old_leader as usize - 1].clone();
    wait_for("the old leader to catch up", Duration::from_secs(20), || {
        let s = status(&old_url)?;
        let me = s["controlplane"].as_array()?.iter().find(|n| n["id"].as_u64() == Some(old_leader))?.clone();
        let leader_applied = s["controlplane"].as_array()?.iter().find(|n| n["role"] == "leader")?
            ["applied_index"]
            .as_u64()?;
        (me["role"] == "follower" && me["applied_index"].as_u64()? >= leader_applied).then_some(())
    })
    .await;

    // Every control-plane node down: MQTT keeps flowing, logins still work.
    for cp in cps.iter_mut() {
        cp.kill9();
    }
    let mut bob = wait_login(mqtt_port, "bob", "pw2").await;
    bob.publish("news/today", b"still serving", QoS::AtLeastOnce, 1).await;
    let got = alice.expect_publish().await;
    assert_eq!(&got.payload[..], b"still serving");
    alice
        .send(&Packet::PubAck(mqtt_codec::PubAck { packet_id: got.packet_id.unwrap(), ..Default::default() }))
        .await;

    // They come back; new writes reach the data plane again.
    for cp in cps.iter_mut() {
        cp.restart();
    }
    wait_for("a leader after the restart", Duration::from_secs(30), || leader_of(&urls[0])).await;
    let (ok, _, err) = mqttctl(&urls[0], &["users", "add", "carol", "--password", "pw3"]);
    assert!(ok, "write after the restart: {err}");
    drop(wait_login(mqtt_port, "carol", "pw3").await);

    // A second data-plane node registers, then is killed with -9: after the
    // grace period it is gone, with its routes.
    let mut dp2 = dataplane(22, mqtt_port_2, &members, dir.path());
    let mut carol = wait_login(mqtt_port_2, "carol", "pw3").await;
    carol.subscribe("dp2/#", QoS::AtMostOnce).await;
    let has_node = |id: u64| {
        status(&urls[0]).map(|s| {
            s["dataplane"]
                .as_array()
                .map(|nodes| nodes.iter().any(|n| n["id"].as_u64() == Some(id)))
                .unwrap_or(false)
        })
    };
    wait_for("data plane 22 to register", Duration::from_secs(15), || has_node(22).filter(|h| *h)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while has_route(&urls[0], "dp2/#", 22).await != Some(true) {
        assert!(Instant::now() < deadline, "node 22's route for dp2/# never reached the control plane");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dp2.kill9();
    wait_for("data plane 22 to be removed", Duration::from_secs(20), || has_node(22).filter(|h| !*h)).await;
    assert_eq!(has_node(21), Some(true), "the live data plane stays");
    let left = routes(&urls[0]).await.expect("the routes after node 22 went");
    assert!(
        left.iter().all(|(_, nodes)| !nodes.contains(&22)),
        "node 22 is gone but routes still name it: {left:?}"
    );
    dp.kill9();
}

#[test]
fn a_data_plane_without_a_credential_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mqttd"))
        .args([
            "dataplane",
            "--set",
            "dataplane.controlplane=127.0.0.1:1",
            "--set",
            "listeners.ws.enabled=false",
        ])
        .args(["--set", "listeners.tcp.bind=127.0.0.1:0"])
        .args(["--set", &format!("node.data_dir={}", dir.path().display())])
        .output()
        .unwrap();
    assert!(!output.status.success(), "a data plane started without a token");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dataplane.token_file"), "{stderr}");
}

/// A bootstrapped control plane on a free port, with the member token.
async fn single_controlplane(dir: &Path) -> (Process, String) {
    let [grpc] = common::free_ports();
    let cp = controlplane(1, "127.0.0.1", grpc, dir, true);
    let url = format!("http://127.0.0.1:{grpc}");
    wait_for("the control plane", Duration::from_secs(15), || (leader_of(&url) == Some(1)).then_some(()))
        .await;
    (cp, url)
}

#[tokio::test]
async fn a_data_plane_with_the_wrong_token_gets_nothing_from_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let (_cp, url) = single_controlplane(dir.path()).await;
    let (ok, _, err) = mqttctl_with_token(&url, "wrong", &["users", "list"]);
    assert!(!ok && err.contains("token"), "{err}");
    let (ok, _, err) = mqttctl(&url, &["users", "add", "alice", "--password", "pw"]);
    assert!(ok, "{err}");
    let [mqtt, mqtt_right] = common::free_ports();
    let wrong = token_file(dir.path(), "wrong.token", "wrong");
    let right = token_file(dir.path(), "right.token", MEMBER_TOKEN);
    let _dp = dataplane_with(31, mqtt, &url, dir.path(), &wrong);
    // The positive control: started at the same time, with the right token,
    // a node gets the view and serves alice.
    let _dp_right = dataplane_with(32, mqtt_right, &url, dir.path(), &right);
    wait_for("the data plane to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", mqtt)).ok().map(|_| ())
    })
    .await;
    drop(wait_login(mqtt_right, "alice", "pw").await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, reason) = connect_as(mqtt, "c", "alice", "pw").await;
    assert_eq!(
        reason,
        ReasonCode::SERVER_UNAVAILABLE,
        "without the token the node never gets a view, so it serves no one (not even anonymously)"
    );
}

#[tokio::test]
async fn a_data_plane_token_serves_only_the_node_it_is_bound_to() {
    let dir = tempfile::tempdir().unwrap();
    let (_cp, url) = single_controlplane(dir.path()).await;
    let (ok, out, err) = mqttctl(&url, &["tokens", "add", "--role", "dataplane", "--node-id", "41"]);
    assert!(ok, "{err}");
    let node41 = token_file(dir.path(), "node41.token", out.trim());
    // The data-plane token is no admin credential.
    let (ok, _, err) = mqttctl_with_token(&url, out.trim(), &["users", "add", "mallory", "--password", "pw"]);
    assert!(!ok && err.contains("not allowed"), "{err}");
    let (ok, _, err) = mqttctl(&url, &["users", "add", "alice", "--password", "pw"]);
    assert!(ok, "{err}");

    // Node 41 follows with it; node 42 presenting node 41's token does not.
    let [mqtt41, mqtt42] = common::free_ports();
    let _dp41 = dataplane_with(41, mqtt41, &url, dir.path(), &node41);
    let _dp42 = dataplane_with(42, mqtt42, &url, dir.path(), &node41);
    drop(wait_login(mqtt41, "alice", "pw").await);
    wait_for("node 42 to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", mqtt42)).ok().map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, out, _) = mqttctl(&url, &["--json", "cluster", "status"]);
    assert!(ok && out.contains("\"id\":41"), "{out}");
    let (_, reason) = connect_as(mqtt42, "c", "alice", "pw").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "node 42 never got the state, so serves no one");
    let (ok, out, _) = mqttctl(&url, &["--json", "cluster", "status"]);
    assert!(ok && !out.contains("\"id\":42"), "node 42's heartbeats were refused: {out}");
    let (ok, out, _) = mqttctl(&url, &["tokens", "list"]);
    assert!(ok && !out.contains(&std::fs::read_to_string(&node41).unwrap().trim().to_owned()), "{out}");
}

#[tokio::test]
async fn a_learner_replicates_without_voting() {
    let dir = tempfile::tempdir().unwrap();
    let ports: [u16; 2] = common::free_ports();
    let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let _voter = controlplane(1, "127.0.0.1", ports[0], dir.path(), true);
    let _learner = controlplane(2, "127.0.0.1", ports[1], dir.path(), false);
    wait_for("node 1 to lead", Duration::from_secs(15), || (leader_of(&urls[0]) == Some(1)).then_some(()))
        .await;
    wait_for("node 2 to answer", Duration::from_secs(10), || status(&urls[1]).map(|_| ())).await;
    let (ok, out, err) = mqttctl(&urls[0], &["cluster", "join", "--learner", &urls[1]]);
    assert!(ok && out.contains("learner"), "{out} {err}");
    // Writes sent to the learner reach the leader; the learner applies them.
    let (ok, _, err) = mqttctl(&urls[1], &["users", "add", "dave", "--password", "pw"]);
    assert!(ok, "write via the learner: {err}");
    wait_for("the learner to apply the write", Duration::from_secs(10), || {
        let s = status(&urls[0])?;
        let nodes = s["controlplane"].as_array()?.clone();
        let leader = nodes.iter().find(|n| n["id"].as_u64() == Some(1))?;
        let learner = nodes.iter().find(|n| n["id"].as_u64() == Some(2))?;
        (learner["role"] == "learner" && learner["applied_index"] == leader["applied_index"]).then_some(())
    })
    .await;
    let (ok, out, _) = mqttctl(&urls[1], &["--json", "users", "list"]);
    assert!(ok && out.contains("dave"), "{out}");
}
