//! The door's hook points seen from outside the crate: an extension
//! authorizer and observers added behind the built-in hooks of a real node,
//! driven by a raw MQTT 5.0 client over TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dataplane::cluster::access::Identity;
use dataplane::cluster::acl::Subject;
use dataplane::cluster::view::Action;
use dataplane::hooks::{ClientEvent, DropReason, Extensions, Interests, Observer, Verdict};
use dataplane::message::Message;
use mqtt_codec::{
    Connect, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Records what it is told; changes and drops messages on two topics.
#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, event: String) {
        self.events.lock().push(event);
    }

    fn has(&self, event: &str) -> bool {
        self.events.lock().iter().any(|e| e == event)
    }
}

impl Observer for Recorder {
    fn interests(&self) -> Interests {
        Interests { clients: true, sessions: true, publish: true, deliveries: true }
    }
    fn client_connected(&self, _: &dataplane::Broker, client: &ClientEvent<'_>) {
        self.push(format!("connected {}", client.identity.client_id));
    }
    fn client_disconnected(&self, _: &dataplane::Broker, client: &Identity, reason: &str) {
        self.push(format!("disconnected {} {reason}", client.client_id));
    }
    fn session_created(&self, client: &Identity) {
        self.push(format!("session created {}", client.client_id));
    }
    fn session_terminated(&self, client_id: &str) {
        self.push(format!("session terminated {client_id}"));
    }
    fn message_publish(&self, _: Option<&Identity>, message: &mut Message) -> bool {
        self.push(format!("publish {}", message.topic));
        match message.topic.as_str() {
            "ext/modify" => {
                message.payload = "changed by a hook".into();
                true
            }
            "ext/drop" => false,
            _ => true,
        }
    }
    fn message_delivered(&self, client_id: &str, message: &Message) {
        self.push(format!("delivered {} to {client_id}", message.topic));
    }
    fn message_acked(&self, client_id: &str, message: &Message) {
        self.push(format!("acked {} by {client_id}", message.topic));
    }
    fn message_dropped(&self, _: Option<&str>, message: &Message, reason: DropReason) {
        self.push(format!("dropped {} {reason:?}", message.topic));
    }
}

/// Denies publishing under `ext/denied`; ignores everything else.
#[derive(Debug)]
struct DenyExt;

impl dataplane::hooks::Authorizer for DenyExt {
    fn authorize(&self, _: &Identity, action: Action, subject: Subject<'_>) -> Verdict<()> {
        if action == Action::Publish && subject.filter.starts_with("ext/denied") {
            Verdict::Deny(ReasonCode::NOT_AUTHORIZED)
        } else {
            Verdict::Ignore
        }
    }
}

struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr, client_id: &str) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut raw = Raw { stream, buf: BytesMut::new() };
        let connect = Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        raw.send(Packet::Connect(Box::new(connect))).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        mqtt_codec::encode(&packet, V5, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    async fn recv(&mut self) -> Packet {
        loop {
            if let Some(packet) = mqtt_codec::decode(&mut self.buf, V5, 1 << 20).expect("decode") {
                return packet;
            }
            let read =
                tokio::time::timeout(Duration::from_secs(5), self.stream.read_buf(&mut self.buf)).await;
            assert!(matches!(read, Ok(Ok(n)) if n > 0), "the broker closed or went silent");
        }
    }

    async fn publish(&mut self, topic: &str, packet_id: u16) -> ReasonCode {
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: Some(packet_id),
            payload: "original".into(),
            ..Default::default()
        };
        self.send(Packet::Publish(publish)).await;
        match self.recv().await {
            Packet::PubAck(ack) => ack.reason,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn extensions_decide_behind_the_built_ins_and_observers_see_every_step() {
    let mut config = dataplane::DataplaneConfig::default();
    config.listeners.tcp.bind = "127.0.0.1:0".parse().unwrap();
    config.listeners.ws.enabled = false;
    config.sys.interval = 0;
    config.sys.presence = false;
    let recorder = Arc::new(Recorder::default());
    let extensions = Extensions {
        authorizers: vec![Arc::new(DenyExt)],
        observers: vec![recorder.clone()],
        ..Default::default()
    };
    let node = dataplane::Node::start_with(config, "hooks".into(), None, extensions).await.expect("start");
    let addr = node.addresses.iter().find(|(name, _)| *name == "tcp").expect("tcp").1;

    let mut sub = Raw::connect(addr, "sub").await;
    let options = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    sub.send(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("ext/#".into(), options)],
        ..Default::default()
    }))
    .await;
    assert!(matches!(sub.recv().await, Packet::SubAck(_)));
    let mut publisher = Raw::connect(addr, "pub").await;

    // The extension authorizer denies; the built-in rules had no opinion.
    assert_eq!(publisher.publish("ext/denied/x", 1).await, ReasonCode::NOT_AUTHORIZED);
    // A publish observer drops one message and changes another.
    assert_eq!(publisher.publish("ext/drop", 2).await, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(publisher.publish("ext/modify", 3).await, ReasonCode::SUCCESS);
    match sub.recv().await {
        Packet::Publish(publish) => {
            assert_eq!(publish.topic, "ext/modify", "the dropped and the denied never arrive");
            assert_eq!(&publish.payload[..], b"changed by a hook");
            sub.send(Packet::PubAck(PubAck { packet_id: publish.packet_id.unwrap(), ..Default::default() }))
                .await;
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    drop(publisher);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let expected = [
        "connected sub",
        "session created sub",
        "connected pub",
        "dropped ext/denied/x NotAuthorized",
        "publish ext/drop",
        "dropped ext/drop ByHook",
        "publish ext/modify",
        "delivered ext/modify to sub",
        "acked ext/modify by sub",
        "disconnected pub sock_closed",
        "session terminated pub",
    ];
    while !expected.iter().all(|e| recorder.has(e)) {
        assert!(tokio::time::Instant::now() < deadline, "missing events: {:?}", recorder.events.lock());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!recorder.has("publish ext/denied/x"), "a denied message is not offered to publish observers");
    node.shutdown(Duration::from_secs(1)).await;
}

/// Lets in user `device` with password `token`; no opinion on anyone else.
#[derive(Debug)]
struct TokenAuth;

impl dataplane::hooks::Authenticator for TokenAuth {
    fn authenticate<'a>(
        &'a self,
        request: dataplane::hooks::ConnectRequest<'a>,
    ) -> dataplane::hooks::HookFuture<'a, Verdict<dataplane::cluster::access::Grant>> {
        Box::pin(async move {
            if request.username == Some("device") && request.password == Some(&b"token"[..]) {
                Verdict::Allow(dataplane::cluster::access::Grant {
                    superuser: false,
                    credential: None,
                    external: false,
                    username: None,
                    rules: None,
                    expires_at: None,
                    client_id: None,
                })
            } else {
                Verdict::Ignore
            }
        })
    }
}

#[tokio::test]
async fn an_extension_authenticator_decides_what_the_built_in_leaves() {
    let mut config = dataplane::DataplaneConfig::default();
    config.listeners.tcp.bind = "127.0.0.1:0".parse().unwrap();
    config.listeners.ws.enabled = false;
    config.sys.interval = 0;
    // The built-in lets no anonymous client in: it leaves them to the chain.
    config.auth.allow_anonymous = dataplane::config::AnonymousPolicy::Deny;
    let extensions = Extensions { authenticators: vec![Arc::new(TokenAuth)], ..Default::default() };
    let node = dataplane::Node::start_with(config, "auth".into(), None, extensions).await.expect("start");
    let addr = node.addresses.iter().find(|(name, _)| *name == "tcp").expect("tcp").1;
    let attempt = |username: Option<&'static str>, password: &'static [u8]| async move {
        let mut raw = Raw { stream: TcpStream::connect(addr).await.expect("connect"), buf: BytesMut::new() };
        let connect = Connect {
            protocol: V5,
            clean_start: true,
            keep_alive: 60,
            client_id: "dev-1".into(),
            will: None,
            username: username.map(str::to_string),
            password: Some(password.to_vec().into()),
            properties: Default::default(),
        };
        raw.send(Packet::Connect(Box::new(connect))).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => ack.reason,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    };
    assert_eq!(attempt(Some("device"), b"token").await, ReasonCode::SUCCESS);
    assert_eq!(
        attempt(Some("device"), b"wrong").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "no one decided"
    );
    assert_eq!(attempt(None, b"token").await, ReasonCode::NOT_AUTHORIZED, "no one decided");
    node.shutdown(Duration::from_secs(1)).await;
}
