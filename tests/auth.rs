//! Users, ACL rules and bans provisioned with `mqttctl` on a standalone
//! broker, enforced on MQTT clients of both protocol versions.

mod common;

use std::time::{Duration, Instant};

use common::{connect_packet, eventually, login, mqttctl, Broker, Client, VERSIONS};
use mqtt_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions};

#[tokio::test]
async fn users_passwords_and_bans() {
    let (broker, grpc) = Broker::start_with_grpc(&[]);
    mqttctl(&broker, &grpc, &["users", "add", "alice", "--password", "secret"]);
    let port = broker.port;
    eventually("alice's account", || async move {
        login(port, ProtocolVersion::V5, "a", "alice", "secret").await.1.is_success()
    })
    .await;
    for version in VERSIONS {
        let (_c, reason) = login(port, version, "a", "alice", "wrong").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{version:?}");
        let (_c, reason) = login(port, version, "m", "mallory", "secret").await;
        assert_eq!(
            reason,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "unknown users are refused once users exist"
        );
        // Auth is configured now: anonymous loopback access has ended.
        let (_c, ack) = Client::connect_with(port, connect_packet(version, "anon", true)).await;
        assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    }
    mqttctl(&broker, &grpc, &["users", "passwd", "alice", "--password", "new"]);
    eventually("the new password", || async move {
        login(port, ProtocolVersion::V311, "a", "alice", "new").await.1.is_success()
    })
    .await;
    // The old password matched recently (and is remembered so that
    // reconnects skip argon2), but not against the current hash.
    for version in VERSIONS {
        let (_c, reason) = login(port, version, "a", "alice", "secret").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "the old password, {version:?}");
    }
    mqttctl(&broker, &grpc, &["banned", "add", "--clientid", "evil"]);
    eventually("the ban", || async move {
        login(port, ProtocolVersion::V5, "evil", "alice", "new").await.1 == ReasonCode::BANNED
    })
    .await;
    mqttctl(&broker, &grpc, &["users", "del", "alice"]);
    // With no users left a username proves nothing: the anonymous policy
    // decides, and on loopback with no users it is open again, so any
    // password is let in. Before the deletion this password was refused.
    eventually("alice's removal", || async move {
        login(port, ProtocolVersion::V5, "a", "alice", "anything").await.1 == ReasonCode::SUCCESS
    })
    .await;
}

#[tokio::test]
async fn acl_rules_deny_publish_and_subscribe_and_spare_superusers() {
    let (broker, grpc) = Broker::start_with_grpc(&[]);
    let port = broker.port;
    mqttctl(&broker, &grpc, &["users", "add", "root", "--password", "pw", "--superuser"]);
    mqttctl(&broker, &grpc, &["users", "add", "bob", "--password", "pw"]);
    mqttctl(
        &broker,
        &grpc,
        &["acl", "add", "--deny", "--action", "subscribe", "--topic", "secret/#", "--all"],
    );
    mqttctl(
        &broker,
        &grpc,
        &["acl", "add", "--deny", "--action", "publish", "--topic", "readonly/#", "--all"],
    );
    mqttctl(
        &broker,
        &grpc,
        &["acl", "add", "--allow", "--action", "all", "--topic", "home/%u/#", "--username", "bob"],
    );
    mqttctl(&broker, &grpc, &["acl", "add", "--deny", "--action", "all", "--topic", "home/#", "--all"]);

    let (mut root, reason) = login(port, ProtocolVersion::V5, "root", "root", "pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    root.subscribe("readonly/#", QoS::AtLeastOnce).await;

    for version in VERSIONS {
        let (mut bob, _) = login(port, version, "bob", "bob", "pw").await;
        // Subscribe: denied filter gets 0x87 (3.1.1: 0x80), allowed one its QoS.
        let filters = vec![
            ("secret/x".to_string(), SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() }),
            ("home/bob/#".to_string(), SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() }),
            ("home/alice/#".to_string(), SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() }),
        ];
        let mut expected =
            vec![ReasonCode::NOT_AUTHORIZED, ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            bob.send(&Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: filters.clone(),
                ..Default::default()
            }))
            .await;
            let got = match bob.recv().await {
                Some(Packet::SubAck(ack)) => ack.reasons,
                other => panic!("expected SUBACK, got {other:?}"),
            };
            if !version.is_v5() {
                expected = vec![ReasonCode(0x80), ReasonCode::GRANTED_QOS_1, ReasonCode(0x80)];
            }
            if got == expected {
                break;
            }
            assert!(Instant::now() < deadline, "{version:?}: SUBACK {got:?}, expected {expected:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Publish: denied is acknowledged with 0x87 (v5) and never delivered.
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: "readonly/x".into(),
            packet_id: Some(5),
            payload: "blocked".into(),
            ..Default::default()
        };
        bob.send(&Packet::Publish(publish)).await;
        match bob.recv().await {
            Some(Packet::PubAck(ack)) if version.is_v5() => {
                assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED)
            }
            Some(Packet::PubAck(_)) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }
        root.expect_silence(Duration::from_millis(300)).await;
        bob.publish("home/bob/lamp", b"on", QoS::AtLeastOnce, 6).await;
        let got = bob.expect_publish().await;
        assert_eq!(got.topic, "home/bob/lamp");
        bob.send(&Packet::PubAck(mqtt_codec::PubAck {
            packet_id: got.packet_id.unwrap(),
            ..Default::default()
        }))
        .await;
    }
    // A superuser passes every rule.
    root.publish("readonly/x", b"from root", QoS::AtLeastOnce, 9).await;
    assert_eq!(&root.expect_publish().await.payload[..], b"from root");
}

async fn login_from(
    source: &str,
    port: u16,
    version: ProtocolVersion,
    user: &str,
    password: &str,
) -> ReasonCode {
    let mut connect = connect_packet(version, "guesser", true);
    connect.username = Some(user.into());
    connect.password = Some(password.as_bytes().to_vec().into());
    Client::connect_from(source, port, connect).await.1.reason
}

/// `auth.failed_login_limit`: an address that keeps failing is refused for
/// a while (0x8A, before any password check), other addresses are not.
#[tokio::test]
async fn repeated_failed_logins_ban_the_address_for_a_while() {
    let (broker, grpc) = Broker::start_with_grpc(&["auth.failed_login_limit=3", "auth.failed_login_ban_s=2"]);
    mqttctl(&broker, &grpc, &["users", "add", "alice", "--password", "secret"]);
    let port = broker.port;
    eventually("alice's account", || async move {
        login(port, ProtocolVersion::V5, "a", "alice", "wrong").await.1
            == ReasonCode::BAD_USER_NAME_OR_PASSWORD
    })
    .await;
    // (That failure came from 127.0.0.1; the guesser is 127.0.0.3.)
    for _ in 0..3 {
        let reason = login_from("127.0.0.3", port, ProtocolVersion::V5, "alice", "guess").await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }
    let reason = login_from("127.0.0.3", port, ProtocolVersion::V5, "alice", "secret").await;
    assert_eq!(reason, ReasonCode::BANNED, "banned: even the right password is refused");
    let reason = login_from("127.0.0.3", port, ProtocolVersion::V311, "alice", "secret").await;
    assert_ne!(reason, ReasonCode::SUCCESS, "3.1.1 too");
    let reason = login_from("127.0.0.4", port, ProtocolVersion::V5, "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "another address is not banned");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let reason = login_from("127.0.0.3", port, ProtocolVersion::V5, "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "the ban is over");
}
