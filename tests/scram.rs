//! MQTT 5 enhanced authentication with SCRAM-SHA-256 against the built-in
//! users (added with `mqttctl users add`), by a client of the test's own
//! over the codec, its cryptography written here with RustCrypto's crates
//! (not the broker's ring): the exchange in CONNECT and the server's
//! signature checked, a wrong password and an unknown user refused alike,
//! a method not offered, re-authentication (good and bad), AUTH from a
//! client that did not use enhanced authentication, and SCRAM refused when
//! the chain has no built-in users.

mod common;

use base64::Engine;
use common::{connect_packet, mqttctl, subscribe_reason, Broker, Client};
use hmac::{Hmac, Mac};
use mqtt_codec::{Auth, AuthProperties, ConnAck, Packet, ProtocolVersion, ReasonCode};
use sha2::{Digest, Sha256};

const METHOD: &str = "SCRAM-SHA-256";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A client's side of one exchange.
struct Scram {
    username: String,
    password: String,
    nonce: String,
}

impl Scram {
    fn new(username: &str, password: &str) -> Scram {
        let nonce = b64(&rand_bytes());
        Scram { username: username.into(), password: password.into(), nonce }
    }

    fn first(&self) -> String {
        format!("n,,n={},r={}", self.username, self.nonce)
    }

    /// The client-final message, and the server-final it expects.
    fn answer(&self, server_first: &str) -> (String, String) {
        let mut parts = server_first.split(',');
        let nonce = parts.next().and_then(|p| p.strip_prefix("r=")).expect("r=");
        assert!(
            nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len(),
            "the server adds to our nonce"
        );
        let salt = base64::engine::general_purpose::STANDARD
            .decode(parts.next().and_then(|p| p.strip_prefix("s=")).expect("s="))
            .expect("salt in base64");
        let iterations: u32 =
            parts.next().and_then(|p| p.strip_prefix("i=")).expect("i=").parse().expect("i");
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(self.password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", &self.first()[3..]);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        (format!("{without_proof},p={}", b64(&proof)), format!("v={}", b64(&server_signature)))
    }
}

fn rand_bytes() -> [u8; 18] {
    let mut bytes = [0u8; 18];
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(37);
    }
    bytes
}

fn auth(reason: ReasonCode, data: &str) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: AuthProperties {
            authentication_method: Some(METHOD.into()),
            authentication_data: Some(data.as_bytes().to_vec().into()),
            ..Default::default()
        },
    })
}

fn data_of(properties: &AuthProperties) -> String {
    String::from_utf8(properties.authentication_data.as_deref().unwrap_or_default().to_vec()).expect("text")
}

/// Runs the exchange in CONNECT; returns the client, the server-first it
/// saw, and the CONNACK (checking the server's signature when it succeeds).
async fn scram_connect(port: u16, client_id: &str, scram: &Scram) -> (Client, String, ConnAck) {
    let mut client = Client::open(port, ProtocolVersion::V5).await;
    let mut connect = connect_packet(ProtocolVersion::V5, client_id, true);
    connect.properties.authentication_method = Some(METHOD.into());
    connect.properties.authentication_data = Some(scram.first().into_bytes().into());
    client.send(&Packet::Connect(Box::new(connect))).await;
    let server_first = match client.recv().await {
        Some(Packet::Auth(auth)) => {
            assert_eq!(auth.reason, ReasonCode::CONTINUE_AUTHENTICATION);
            assert_eq!(auth.properties.authentication_method.as_deref(), Some(METHOD));
            data_of(&auth.properties)
        }
        other => panic!("expected AUTH, got {other:?}"),
    };
    let (client_final, expected) = scram.answer(&server_first);
    client.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, &client_final)).await;
    let ack = match client.recv().await {
        Some(Packet::ConnAck(ack)) => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    if ack.reason == ReasonCode::SUCCESS {
        let props = &ack.properties;
        assert_eq!(props.authentication_method.as_deref(), Some(METHOD));
        let server_final =
            String::from_utf8(props.authentication_data.as_deref().unwrap_or_default().to_vec()).unwrap();
        assert_eq!(server_final, expected, "the server proves it knows the verifier");
    }
    (client, server_first, ack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_logs_in_built_in_users_and_re_authenticates() {
    let (broker, grpc) = Broker::start_with_grpc(&["auth.acl_no_match=deny"]);
    mqttctl(&broker, &grpc, &["users", "add", "alice", "--password", "wonderland"]);
    mqttctl(&broker, &grpc, &["users", "add", "root", "--password", "toor", "--superuser"]);
    let port = broker.port;

    let (mut alice, _, ack) = scram_connect(port, "a1", &Scram::new("alice", "wonderland")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe_reason(&mut alice, "any/#").await, ReasonCode::NOT_AUTHORIZED, "not a superuser");
    let (mut root, _, ack) = scram_connect(port, "r1", &Scram::new("root", "toor")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(subscribe_reason(&mut root, "any/#").await, ReasonCode::GRANTED_QOS_0, "a superuser");

    // A wrong password and a user who does not exist look alike: the same
    // iterations, a salt of the same size, stable per name, and 0x86.
    let (_c, real_first, ack) = scram_connect(port, "a2", &Scram::new("alice", "looking-glass")).await;
    assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_c, fake_first, ack) = scram_connect(port, "n1", &Scram::new("nobody", "x")).await;
    assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let (_c, fake_again, _) = scram_connect(port, "n2", &Scram::new("nobody", "y")).await;
    let salt_and_iterations = |first: &str| first.split_once(",s=").map(|(_, rest)| rest.to_owned()).unwrap();
    assert_eq!(salt_and_iterations(&fake_first), salt_and_iterations(&fake_again), "a stable made-up salt");
    assert_eq!(salt_and_iterations(&real_first).len(), salt_and_iterations(&fake_first).len());
    assert!(fake_first.ends_with(",i=4096") && real_first.ends_with(",i=4096"));

    // A method not offered: 0x8C.
    let mut connect = connect_packet(ProtocolVersion::V5, "m1", true);
    connect.properties.authentication_method = Some("GS2-KRB5".into());
    let (_c, ack) = Client::connect_with(port, connect).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);

    // Re-authentication: AUTH 0x19, the same exchange, AUTH 0x00 with the
    // server's signature; the connection goes on.
    let again = Scram::new("alice", "wonderland");
    alice.send(&auth(ReasonCode::REAUTHENTICATE, &again.first())).await;
    let server_first = match alice.recv().await {
        Some(Packet::Auth(auth)) if auth.reason == ReasonCode::CONTINUE_AUTHENTICATION => {
            data_of(&auth.properties)
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    };
    let (client_final, expected) = again.answer(&server_first);
    alice.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, &client_final)).await;
    match alice.recv().await {
        Some(Packet::Auth(auth)) if auth.reason == ReasonCode::SUCCESS => {
            assert_eq!(data_of(&auth.properties), expected)
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    assert_eq!(subscribe_reason(&mut alice, "more/#").await, ReasonCode::NOT_AUTHORIZED, "still connected");

    // The password changed: re-authenticating with the old one ends the connection.
    mqttctl(&broker, &grpc, &["users", "passwd", "alice", "--password", "changed"]);
    let stale = Scram::new("alice", "wonderland");
    alice.send(&auth(ReasonCode::REAUTHENTICATE, &stale.first())).await;
    let server_first = match alice.recv().await {
        Some(Packet::Auth(auth)) => data_of(&auth.properties),
        other => panic!("expected AUTH, got {other:?}"),
    };
    alice.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, &stale.answer(&server_first).0)).await;
    alice.expect_disconnect(ReasonCode::NOT_AUTHORIZED).await;
    let (_c, _, ack) = scram_connect(port, "a3", &Scram::new("alice", "changed")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "the new password's verifier");

    // AUTH from a client that logged in with a password: a protocol error.
    let mut plain = connect_packet(ProtocolVersion::V5, "p1", true);
    plain.username = Some("root".into());
    plain.password = Some(b"toor".to_vec().into());
    let (mut plain, ack) = Client::connect_with(port, plain).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    plain.send(&auth(ReasonCode::REAUTHENTICATE, &Scram::new("root", "toor").first())).await;
    plain.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn scram_is_not_offered_without_the_built_in_users_in_the_chain() {
    let chain = "auth.authenticators=[{ type = \"jwt\", secret = \"s\" }]";
    let broker = Broker::start(&[chain]);
    let mut connect = connect_packet(ProtocolVersion::V5, "c", true);
    connect.properties.authentication_method = Some(METHOD.into());
    connect.properties.authentication_data = Some(Scram::new("alice", "x").first().into_bytes().into());
    let (_c, ack) = Client::connect_with(broker.port, connect).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
}
