//! MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`), TLS with and
//! without client-certificate verification, and WSS, all against certificates
//! made for the test with rcgen.

mod common;

use std::sync::Arc;

use bytes::BytesMut;
use common::{connect_packet, free_port, Broker, Client};
use futures_util::{SinkExt, StreamExt};
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "test ca");
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let pki = Pki { ca, ca_key, dir };
        let (cert, key) = pki.issue("localhost", true);
        std::fs::write(pki.dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(pki.dir.path().join("server.key"), key.serialize_pem()).unwrap();
        pki
    }

    fn issue(&self, name: &str, server: bool) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert, key)
    }

    /// `--set` pairs for a TLS listener on `port` that requires a client
    /// certificate from this CA.
    fn verifying_listener(&self, port: u16) -> Vec<String> {
        vec![
            "listeners.tls.enabled=true".to_owned(),
            format!("listeners.tls.bind=127.0.0.1:{port}"),
            format!("listeners.tls.certfile={}", self.path("server.pem")),
            format!("listeners.tls.keyfile={}", self.path("server.key")),
            format!("listeners.tls.cacertfile={}", self.path("ca.pem")),
            "listeners.tls.verify_peer=true".to_owned(),
        ]
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    fn client_config(&self, client_cert: bool) -> rustls::ClientConfig {
        self.client_config_for(client_cert.then_some((self, "client")))
    }

    /// Trusts this CA; presents a certificate for `name` from `issuer`, if given.
    fn client_config_for(&self, identity: Option<(&Pki, &str)>) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        if let Some((issuer, name)) = identity {
            let (cert, key) = issuer.issue(name, false);
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            builder.with_client_auth_cert(vec![CertificateDer::from(cert.der().to_vec())], key).unwrap()
        } else {
            builder.with_no_client_auth()
        }
    }
}

/// CONNECT over any byte stream and read CONNACK's first bytes.
async fn mqtt_handshake<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    let connect = connect_packet(ProtocolVersion::V311, "tls-client", true);
    mqtt_codec::encode(&Packet::Connect(Box::new(connect)), ProtocolVersion::V311, &mut out).unwrap();
    stream.write_all(&out).await.ok()?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(common::WAIT, stream.read_exact(&mut buf)).await.ok()?.ok()?;
    Some(buf.to_vec())
}

#[tokio::test]
async fn websocket_with_mqtt_subprotocol() {
    let broker = Broker::start(&[]);
    let mut request = format!("ws://127.0.0.1:{}/mqtt", broker.ws_port).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.expect("ws handshake");
    assert_eq!(response.headers().get("Sec-WebSocket-Protocol").unwrap(), "mqtt");

    let mut sub = Client::connect(broker.port, ProtocolVersion::V311, "tcp-sub", true).await;
    sub.subscribe("ws/#", QoS::AtMostOnce).await;

    let mut out = BytesMut::new();
    let v5 = ProtocolVersion::V5;
    mqtt_codec::encode(&Packet::Connect(Box::new(connect_packet(v5, "ws-client", true))), v5, &mut out)
        .unwrap();
    let publish =
        mqtt_codec::Publish { topic: "ws/hello".into(), payload: "over ws".into(), ..Default::default() };
    mqtt_codec::encode(&Packet::Publish(publish), v5, &mut out).unwrap();
    ws.send(WsMessage::Binary(out.to_vec().into())).await.unwrap();
    let frame = tokio::time::timeout(common::WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    let mut data = BytesMut::from(&frame.into_data()[..]);
    match mqtt_codec::decode(&mut data, v5, 1 << 20).unwrap() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(&sub.expect_publish().await.payload[..], b"over ws");

    // Another path is refused at the HTTP level.
    let wrong = format!("ws://127.0.0.1:{}/other", broker.ws_port);
    assert!(tokio_tungstenite::connect_async(wrong).await.is_err());
}

#[tokio::test]
async fn tls_and_wss_listeners() {
    let pki = Pki::new();
    let [port, ws_port, tls_port, wss_port] = common::free_ports();
    let mut broker = Broker::start_on(
        port,
        ws_port,
        &[
            "listeners.tls.enabled=true",
            &format!("listeners.tls.bind=127.0.0.1:{tls_port}"),
            &format!("listeners.tls.certfile={}", pki.path("server.pem")),
            &format!("listeners.tls.keyfile={}", pki.path("server.key")),
            "listeners.wss.enabled=true",
            &format!("listeners.wss.bind=127.0.0.1:{wss_port}"),
            &format!("listeners.wss.certfile={}", pki.path("server.pem")),
            &format!("listeners.wss.keyfile={}", pki.path("server.key")),
        ],
    );
    broker.wait_port(tls_port);
    broker.wait_port(wss_port);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(false)));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let mut tls =
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake");
    assert_eq!(mqtt_handshake(&mut tls).await, Some(vec![0x20, 2, 0, 0]), "CONNACK accepted");

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", wss_port)).await.unwrap();
    let tls =
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake");
    let mut request = format!("wss://localhost:{wss_port}/mqtt").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut wss, _) = tokio_tungstenite::client_async(request, tls).await.expect("wss handshake");
    let mut out = BytesMut::new();
    let v3 = ProtocolVersion::V311;
    mqtt_codec::encode(&Packet::Connect(Box::new(connect_packet(v3, "wss-client", true))), v3, &mut out)
        .unwrap();
    wss.send(WsMessage::Binary(out.to_vec().into())).await.unwrap();
    let frame = tokio::time::timeout(common::WAIT, wss.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&frame.into_data()[..], &[0x20, 2, 0, 0]);
}

#[tokio::test]
async fn tls_client_certificates_are_verified_when_asked() {
    let pki = Pki::new();
    let [port, ws_port, tls_port] = common::free_ports();
    let settings = pki.verifying_listener(tls_port);
    let mut broker =
        Broker::start_on(port, ws_port, &settings.iter().map(String::as_str).collect::<Vec<_>>());
    broker.wait_port(tls_port);
    // Without a client certificate: refused during or right after the handshake.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(false)));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    if let Ok(mut tls) = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await {
        assert_eq!(mqtt_handshake(&mut tls).await, None, "no MQTT without a client certificate");
    }
    // With one signed by the CA: accepted.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(true)));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let mut tls =
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("handshake");
    assert_eq!(mqtt_handshake(&mut tls).await, Some(vec![0x20, 2, 0, 0]));
}

#[test]
fn tls_listener_with_unreadable_certificate_fails_start_naming_the_key() {
    let port = free_port();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mqttd"))
        .args([
            "--set",
            &format!("listeners.tcp.bind=127.0.0.1:{port}"),
            "--set",
            "listeners.ws.enabled=false",
        ])
        .args(["--set", "listeners.tls.enabled=true", "--set", "listeners.tls.bind=127.0.0.1:0"])
        .args([
            "--set",
            "listeners.tls.certfile=/nonexistent/cert.pem",
            "--set",
            "listeners.tls.keyfile=/nonexistent/k",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("certfile") && stderr.contains("/nonexistent/cert.pem"), "{stderr}");
}

#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    for (setting, key) in [
        ("listeners.tcp.bindd=127.0.0.1:1", "bindd"),
        ("mqtt.max_qos=7", "mqtt.max_qos"),
        ("session.queue_full_policy=keep_all", "session.queue_full_policy"),
        ("listeners.tcp.bind=not-an-address", "listeners.tcp.bind"),
        ("dataplane.peer_tls.enabled=true", "dataplane.peer_tls.cacertfile"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(["--set", setting])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{setting}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{setting}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[mqtt]\nmax_inflight = \"lots\"\n").unwrap();
    let output =
        std::process::Command::new(env!("CARGO_BIN_EXE_mqttd")).arg("--config").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("mqtt.max_inflight") && stderr.contains("bad.toml"), "{stderr}");
}

#[test]
fn a_taken_port_fails_start() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mqttd"))
        .args([
            "--set",
            &format!("listeners.tcp.bind=127.0.0.1:{port}"),
            "--set",
            "listeners.ws.enabled=false",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("listeners.tcp.bind"));
}

async fn send_over<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, packet: &Packet) {
    let mut out = BytesMut::new();
    mqtt_codec::encode(packet, ProtocolVersion::V5, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
}

async fn recv_over<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        if let Ok(Some(packet)) = mqtt_codec::decode(buf, ProtocolVersion::V5, 1 << 20) {
            return Some(packet);
        }
        buf.reserve(4096);
        match tokio::time::timeout(common::WAIT, stream.read_buf(buf)).await {
            Ok(Ok(read)) if read > 0 => {}
            _ => return None,
        }
    }
}

/// `type = "x509"`: the verified certificate's common name is the
/// username (no password), and ACL rules see it; no certificate, or one
/// from another CA, gets nothing.
#[tokio::test]
async fn x509_the_certificate_name_is_the_username() {
    let pki = Pki::new();
    std::fs::write(pki.dir.path().join("acl"), "user device-7\ntopic readwrite devices/device-7/#\n")
        .unwrap();
    let [port, ws_port, tls_port] = common::free_ports();
    let authorizers = format!("auth.authorizers=[{{ type = \"file\", path = \"{}\" }}]", pki.path("acl"));
    let mut settings = pki.verifying_listener(tls_port);
    settings.extend([
        "auth.authenticators=[{ type = \"x509\" }, { type = \"builtin\" }]".to_owned(),
        authorizers,
        "auth.allow_anonymous=deny".to_owned(),
        "auth.acl_no_match=deny".to_owned(),
    ]);
    let mut broker =
        Broker::start_on(port, ws_port, &settings.iter().map(String::as_str).collect::<Vec<_>>());
    broker.wait_port(tls_port);
    let server_name = ServerName::try_from("localhost").unwrap();

    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(pki.client_config_for(Some((&pki, "device-7")))));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let mut tls = connector.connect(server_name.clone(), tcp).await.expect("handshake");
    let mut buf = BytesMut::new();
    send_over(&mut tls, &Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "d7", true)))).await;
    match recv_over(&mut tls, &mut buf).await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::SUCCESS, "in without a password"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let filters = ["devices/device-7/#", "devices/device-8/#"]
        .iter()
        .map(|filter| (filter.to_string(), mqtt_codec::SubscriptionOptions::default()))
        .collect();
    send_over(
        &mut tls,
        &Packet::Subscribe(mqtt_codec::Subscribe { packet_id: 1, filters, ..Default::default() }),
    )
    .await;
    match recv_over(&mut tls, &mut buf).await {
        Some(Packet::SubAck(ack)) => assert_eq!(
            ack.reasons,
            vec![ReasonCode::GRANTED_QOS_0, ReasonCode::NOT_AUTHORIZED],
            "the rules of user device-7 apply"
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }

    // Plain TCP, no certificate and no credentials: the x509 authenticator
    // passes, the built-in one refuses.
    let (_client, ack) = Client::connect_with(port, connect_packet(ProtocolVersion::V5, "p", true)).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);

    // A certificate from another CA: no TLS session, so no MQTT.
    let other = Pki::new();
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(pki.client_config_for(Some((&other, "device-7")))));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    if let Ok(mut tls) = connector.connect(server_name, tcp).await {
        assert_eq!(mqtt_handshake(&mut tls).await, None, "no MQTT with another CA's certificate");
    }
}

/// The CONNACK reason a WebSocket client gets for `connect`.
async fn ws_connack(ws_port: u16, connect: mqtt_codec::Connect) -> ReasonCode {
    let mut request = format!("ws://127.0.0.1:{ws_port}/mqtt").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("ws handshake");
    let mut out = BytesMut::new();
    let version = connect.protocol;
    mqtt_codec::encode(&Packet::Connect(Box::new(connect)), version, &mut out).unwrap();
    ws.send(WsMessage::Binary(out.to_vec().into())).await.unwrap();
    let frame = tokio::time::timeout(common::WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    let mut data = BytesMut::from(&frame.into_data()[..]);
    match mqtt_codec::decode(&mut data, version, 1 << 20).unwrap() {
        Some(Packet::ConnAck(ack)) => ack.reason,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A listener with a chain of its own (`listeners.tcp.authenticators`)
/// uses it; the others keep `auth.authenticators` (here the default: the
/// built-in provider, anonymous clients allowed on loopback).
#[tokio::test]
async fn a_listener_may_have_its_own_authenticator_chain() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let broker = Broker::start(&["listeners.tcp.authenticators=[{ type = \"jwt\", secret = \"tcp-only\" }]"]);
    let token = encode(
        &Header::default(),
        &serde_json::json!({"sub": "dev", "exp": 4_000_000_000u64}),
        &EncodingKey::from_secret(b"tcp-only"),
    )
    .unwrap();
    let with_token = || {
        let mut connect = connect_packet(ProtocolVersion::V5, "dev", true);
        connect.username = Some("dev".into());
        connect.password = Some(token.clone().into_bytes().into());
        connect
    };
    let anonymous = || connect_packet(ProtocolVersion::V5, "anon", true);

    // TCP: the JWT chain alone.
    let (_c, ack) = Client::connect_with(broker.port, with_token()).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let (_c, ack) = Client::connect_with(broker.port, anonymous()).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED, "no anonymous clients on this listener");
    // WebSocket: the global chain.
    assert_eq!(ws_connack(broker.ws_port, anonymous()).await, ReasonCode::SUCCESS);
    assert_eq!(
        ws_connack(broker.ws_port, with_token()).await,
        ReasonCode::SUCCESS,
        "no users yet: the built-in provider lets loopback in, token or not"
    );
}

/// `type = "x509"` with `clientid = "cn"`: the certificate's name is the
/// client id too, whatever CONNECT said (a 5.0 client is told it as an
/// assigned client identifier), so a device cannot take another's session
/// by sending its client id.
#[tokio::test]
async fn x509_the_certificate_name_may_be_the_client_id() {
    let pki = Pki::new();
    let [port, ws_port, tls_port] = common::free_ports();
    let mut settings = pki.verifying_listener(tls_port);
    settings.push("listeners.tls.authenticators=[{ type = \"x509\", clientid = \"cn\" }]".to_owned());
    let mut broker =
        Broker::start_on(port, ws_port, &settings.iter().map(String::as_str).collect::<Vec<_>>());
    broker.wait_port(tls_port);
    let server_name = ServerName::try_from("localhost").unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(pki.client_config_for(Some((&pki, "device-9")))));

    // Watch for presence: the session is device-9's, not "someone-else"'s.
    let mut watcher = Client::connect(port, ProtocolVersion::V5, "watcher", true).await;
    watcher.subscribe("$SYS/brokers/+/clients/+/connected", mqtt_codec::QoS::AtMostOnce).await;

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let mut tls = connector.connect(server_name, tcp).await.expect("handshake");
    let mut buf = BytesMut::new();
    let connect = connect_packet(ProtocolVersion::V5, "someone-else", true);
    send_over(&mut tls, &Packet::Connect(Box::new(connect))).await;
    match recv_over(&mut tls, &mut buf).await {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, ReasonCode::SUCCESS);
            assert_eq!(ack.properties.assigned_client_identifier.as_deref(), Some("device-9"));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let event = watcher.expect_publish().await;
    assert!(event.topic.ends_with("/clients/device-9/connected"), "{}", event.topic);
}
