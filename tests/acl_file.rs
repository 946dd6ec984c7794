//! The `file` authorizer (`[[auth.authorizers]] type = "file"`), a
//! Mosquitto `acl_file`, on a standalone broker with real MQTT clients:
//! grants, denials, placeholders that must not widen, a reload on change, a
//! broken file at start, and chain types this build does not have.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{connect_packet, Broker, Client, VERSIONS};
use mqtt_codec::{Packet, ProtocolVersion, PubAck, QoS, ReasonCode, Subscribe, SubscriptionOptions};

const RULES: &str = "\
# anonymous clients (no username): each device writes its own topic
topic read devices/+/up
pattern write devices/%c/up
pattern deny devices/%c/up/blocked
";

/// A broker whose authorizer chain is the ACL file alone, with nothing
/// allowed that it does not grant.
fn broker_with(file: &std::path::Path) -> Broker {
    let chain = format!(
        "auth.authorizers=[{{ type = \"file\", path = \"{}\", reload_interval_ms = 100 }}]",
        file.display()
    );
    Broker::start(&[&chain, "auth.acl_no_match=deny"])
}

async fn subscribe_reasons(client: &mut Client, filters: &[&str]) -> Vec<ReasonCode> {
    let filters = filters
        .iter()
        .map(|filter| {
            (filter.to_string(), SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() })
        })
        .collect();
    client.send(&Packet::Subscribe(Subscribe { packet_id: 1, filters, ..Default::default() })).await;
    match client.recv().await {
        Some(Packet::SubAck(ack)) => ack.reasons,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// A PUBACK reason of a publish that was allowed.
fn allowed(reason: ReasonCode) -> bool {
    reason == ReasonCode::SUCCESS || reason == ReasonCode::NO_MATCHING_SUBSCRIBERS
}

#[tokio::test]
async fn an_acl_file_grants_and_denies_and_is_reloaded_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    std::fs::write(&path, RULES).unwrap();
    let broker = broker_with(&path);
    let port = broker.port;

    let mut watcher = Client::connect(port, ProtocolVersion::V5, "watcher", true).await;
    assert_eq!(
        subscribe_reasons(&mut watcher, &["devices/+/up", "devices/#", "other/x"]).await,
        vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED, ReasonCode::NOT_AUTHORIZED],
        "only what a read grant covers"
    );
    for version in VERSIONS {
        let mut device = Client::connect(port, version, "dev1", true).await;
        let reason = device.publish_reason("devices/dev1/up", b"mine", 7).await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{version:?}");
        let got = watcher.expect_publish().await;
        assert_eq!((&*got.topic, &got.payload[..]), ("devices/dev1/up", &b"mine"[..]));
        // Another device's topic, and an explicit deny, are refused (3.1.1
        // has no reason in PUBACK: the message is dropped all the same).
        for topic in ["devices/dev2/up", "devices/dev1/up/blocked"] {
            let reason = device.publish_reason(topic, b"not mine", 7).await;
            if version.is_v5() {
                assert_eq!(reason, ReasonCode::NOT_AUTHORIZED, "{topic}");
            }
        }
        watcher.expect_silence(Duration::from_millis(300)).await;
    }
    // A client id that is a wildcard widens nothing.
    let mut sneaky = Client::connect(port, ProtocolVersion::V5, "+", true).await;
    assert_eq!(sneaky.publish_reason("devices/dev1/up", b"spoof", 7).await, ReasonCode::NOT_AUTHORIZED);
    watcher.expect_silence(Duration::from_millis(300)).await;

    // Take the read grant out: once the file is reloaded, the watcher's
    // subscription is judged again and dropped (and its connection stays).
    std::fs::write(&path, "pattern write devices/%c/up\n").unwrap();
    let mut device = Client::connect(port, ProtocolVersion::V5, "dev1", true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reason = device.publish_reason("devices/dev1/up", b"probe", 7).await;
        assert!(allowed(reason), "{reason:?}");
        match watcher.recv_within(Duration::from_millis(500)).await {
            Some(Packet::Publish(got)) => {
                assert_eq!(&got.payload[..], b"probe");
                let ack = PubAck { packet_id: got.packet_id.unwrap_or(0), ..Default::default() };
                watcher.send(&Packet::PubAck(ack)).await;
            }
            None => break,
            other => panic!("expected PUBLISH or nothing, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "the subscription outlived the rule that allowed it");
    }
    watcher.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(subscribe_reasons(&mut watcher, &["devices/+/up"]).await, vec![ReasonCode::NOT_AUTHORIZED]);
    // A broken file keeps the rules in force.
    std::fs::write(&path, "topic read devices/+/up\nwhat is this\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(subscribe_reasons(&mut watcher, &["devices/+/up"]).await, vec![ReasonCode::NOT_AUTHORIZED]);
    let reason = device.publish_reason("devices/dev1/up", b"still", 7).await;
    assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS, "allowed, and nobody may read it");
}

/// Runs `mqttd` with `settings` until it exits (`timeout` stops it after
/// 20 s: a node that kept running fails the checks on its stderr); answers
/// its success and stderr.
fn run_to_exit(settings: &[String]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("timeout");
    command.arg("20").arg(env!("CARGO_BIN_EXE_mqttd")).current_dir(dir.path());
    for setting in [
        "listeners.tcp.bind=127.0.0.1:0".to_owned(),
        "listeners.ws.enabled=false".to_owned(),
        "controlplane.bind=127.0.0.1:0".to_owned(),
        format!("node.data_dir={}", dir.path().display()),
    ]
    .iter()
    .chain(settings)
    {
        command.arg("--set").arg(setting);
    }
    let output = command.output().expect("run mqttd");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_broken_acl_file_or_bad_backend_settings_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    std::fs::write(&path, "topic read a/#\ntopic read a/#/b\n").unwrap();
    let chain = format!("auth.authorizers=[{{ type = \"file\", path = \"{}\" }}]", path.display());
    let (ok, stderr) = run_to_exit(&[chain]);
    assert!(!ok);
    assert!(stderr.contains(&format!("{}:2", path.display())), "names the file and line: {stderr}");

    let missing =
        format!("auth.authorizers=[{{ type = \"file\", path = \"{}/none\" }}]", dir.path().display());
    let (ok, stderr) = run_to_exit(&[missing]);
    assert!(!ok);
    assert!(stderr.contains("cannot read the ACL file"), "{stderr}");

    let (ok, stderr) = run_to_exit(&["auth.authorizers=[{ type = \"http\", url = \"ftp://x\" }]".to_owned()]);
    assert!(!ok);
    assert!(stderr.contains("auth.authorizers") && stderr.contains("scheme"), "{stderr}");
    // An authorizer this build has, with its settings wrong: says which.
    let (ok, stderr) =
        run_to_exit(&["auth.authorizers=[{ type = \"redis\", server = \"x\", cmd = \"GET k\" }]".to_owned()]);
    assert!(!ok);
    assert!(stderr.contains("auth.authorizers") && stderr.contains("HGETALL"), "{stderr}");
    let (ok, stderr) = run_to_exit(&["auth.authenticators=[{ type = \"ldap\", server = \"x\" }]".to_owned()]);
    assert!(!ok);
    assert!(stderr.contains("bind_dn"), "{stderr}");
    // A backend this build has, with its settings wrong: says which.
    let (ok, stderr) =
        run_to_exit(&["auth.authenticators=[{ type = \"redis\", server = \"x\" }]".to_owned()]);
    assert!(!ok);
    assert!(stderr.contains("cmd"), "{stderr}");
    let (ok, stderr) = run_to_exit(&["auth.authorizers=[{ type = \"nosuch\" }]".to_owned()]);
    assert!(!ok);
    assert!(stderr.contains("nosuch"), "{stderr}");
}

/// With `builtin` listed after the file, the control plane's rules decide
/// what the file leaves open; a v3.1.1 client is refused the same way.
#[tokio::test]
async fn the_chain_order_is_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    std::fs::write(&path, "topic deny locked/#\n").unwrap();
    let chain = format!(
        "auth.authorizers=[{{ type = \"file\", path = \"{}\" }}, {{ type = \"builtin\" }}]",
        path.display()
    );
    let broker = Broker::start(&[&chain]);
    let mut client = Client::connect(broker.port, ProtocolVersion::V5, "c", true).await;
    // The file denies; nothing matches elsewhere, and acl_no_match allows.
    assert_eq!(
        subscribe_reasons(&mut client, &["locked/x", "open/x"]).await,
        vec![ReasonCode::NOT_AUTHORIZED, ReasonCode::GRANTED_QOS_1]
    );
    let mut old = Client::connect_with(broker.port, connect_packet(ProtocolVersion::V311, "o", true)).await.0;
    assert_eq!(subscribe_reasons(&mut old, &["locked/y"]).await, vec![ReasonCode(0x80)]);
}

/// `auth.deny_action = disconnect`: a refused publish (any QoS) or
/// subscription closes the connection (5.0: DISCONNECT 0x87 first); what
/// is allowed keeps it open.
#[tokio::test]
async fn deny_action_disconnect_closes_a_refused_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    std::fs::write(&path, RULES).unwrap();
    let chain = format!("auth.authorizers=[{{ type = \"file\", path = \"{}\" }}]", path.display());
    let broker = Broker::start(&[&chain, "auth.acl_no_match=deny", "auth.deny_action=disconnect"]);
    let port = broker.port;
    for version in VERSIONS {
        let mut device = Client::connect(port, version, "d1", true).await;
        assert_eq!(subscribe_reasons(&mut device, &["devices/+/up"]).await, vec![ReasonCode::GRANTED_QOS_1]);
        device.publish("devices/d1/up", b"ok", QoS::AtLeastOnce, 1).await;
        // A QoS 0 publish elsewhere: nothing to answer, but the connection goes.
        device.publish("devices/d2/up", b"not mine", QoS::AtMostOnce, 0).await;
        device.expect_disconnect(ReasonCode::NOT_AUTHORIZED).await;

        let mut device = Client::connect(port, version, "d1", true).await;
        let filters = vec![("secrets/#".to_owned(), SubscriptionOptions::default())];
        device.send(&Packet::Subscribe(Subscribe { packet_id: 2, filters, ..Default::default() })).await;
        device.expect_disconnect(ReasonCode::NOT_AUTHORIZED).await;
    }
}
