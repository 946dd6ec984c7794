//! Test harness: starts the built `mqttd` on free loopback ports and speaks
//! MQTT to it byte by byte through the codec, so that tests can send exactly
//! the packets (good or malformed) they mean to and see every reply.
#![allow(dead_code)]
// The harness runs before and around the runtime: blocking waits are fine here.
#![allow(clippy::disallowed_methods)]

pub mod fleet;

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use mqtt_codec::{
    ConnAck, Connect, ConnectProperties, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// `N` distinct free ports (held open together while they are picked).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<StdListener> =
        (0..N).map(|_| StdListener::bind("127.0.0.1:0").expect("free port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

/// Whether process `pid` holds a TCP socket listening on `port` (read from
/// `/proc/net/tcp{,6}` and the process's open files).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN.
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && fields.get(3) == Some(&"0A") {
                if let Some(inode) = fields.get(9) {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|inode| target.as_os_str() == inode.as_str()))
    })
}

/// Waits until `child` itself listens on `port`; says why not if it exits
/// first or `timeout` passes (then it is left running for the caller).
pub fn wait_listening(child: &mut Child, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if listens_on(child.id(), port) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("pid {} exited ({status}) before listening on {port}", child.id()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("pid {} did not start listening on {port}", child.id()))
}

/// A running `mqttd`, killed on drop.
pub struct Broker {
    child: Child,
    /// The `--set` pairs it was started with, for [`Broker::restart`].
    settings: Vec<String>,
    pub port: u16,
    pub ws_port: u16,
    pub dir: tempfile::TempDir,
}

impl Broker {
    /// Starts `mqttd` with TCP and WS on free ports plus `extra` `--set` pairs.
    pub fn start(extra: &[&str]) -> Broker {
        // Both at once: two calls to free_port() may return the same port.
        // A port picked free can still be taken before mqttd binds it (by
        // another test): then mqttd exits, and it is started again on others.
        for _ in 0..2 {
            let [port, ws_port] = free_ports();
            if let Ok(broker) = Broker::try_start_on(port, ws_port, extra) {
                return broker;
            }
        }
        let [port, ws_port] = free_ports();
        Broker::start_on(port, ws_port, extra)
    }

    /// Starts `mqttd` with its embedded control plane's gRPC on a known
    /// port (returned), for tests that drive it with `mqttctl`.
    pub fn start_with_grpc(extra: &[&str]) -> (Broker, String) {
        let [port, ws_port, grpc] = free_ports();
        let bind = format!("controlplane.bind=127.0.0.1:{grpc}");
        let mut settings: Vec<&str> = extra.to_vec();
        settings.push(&bind);
        (Broker::start_on(port, ws_port, &settings), format!("http://127.0.0.1:{grpc}"))
    }

    /// Starts `mqttd` with TCP and WS on the given ports.
    pub fn start_on(port: u16, ws_port: u16, extra: &[&str]) -> Broker {
        Broker::try_start_on(port, ws_port, extra).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts `mqttd` with TCP and WS on the given ports; says why not if it
    /// exits or does not listen.
    fn try_start_on(port: u16, ws_port: u16, extra: &[&str]) -> Result<Broker, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = vec![
            format!("listeners.tcp.bind=127.0.0.1:{port}"),
            format!("listeners.ws.bind=127.0.0.1:{ws_port}"),
            format!("node.data_dir={}", dir.path().display()),
            "sys.interval=0".to_owned(),
            "controlplane.bind=127.0.0.1:0".to_owned(),
        ];
        settings.extend(extra.iter().map(|setting| (*setting).to_owned()));
        let child = Broker::spawn(dir.path(), &settings);
        let mut broker = Broker { child, settings, port, ws_port, dir };
        broker.try_wait_port(port)?;
        Ok(broker)
    }

    fn spawn(dir: &std::path::Path, settings: &[String]) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mqttd"));
        for setting in settings {
            command.arg("--set").arg(setting);
        }
        // MQTTD_TEST_LOG=1 shows the broker's log, to debug a failing test.
        let log = if std::env::var_os("MQTTD_TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
        command.current_dir(dir).stdout(Stdio::null()).stderr(log).spawn().expect("spawn mqttd")
    }

    /// Stops it (SIGTERM) and starts it again with the same settings, in the
    /// same directory.
    pub fn restart(&mut self) {
        self.terminate();
        self.child = Broker::spawn(self.dir.path(), &self.settings);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        self.wait_port(self.port);
    }

    /// Waits until this `mqttd` listens on `port` (listeners bind one by
    /// one). The listening socket must be this process's: a port picked
    /// free may be taken by another test's listener before `mqttd` binds it,
    /// and a connect would then succeed against the wrong server.
    pub fn wait_port(&mut self, port: u16) {
        self.try_wait_port(port).unwrap_or_else(|why| panic!("{why}"));
    }

    fn try_wait_port(&mut self, port: u16) -> Result<(), String> {
        wait_listening(&mut self.child, port, Duration::from_secs(10))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "mqttd did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin token file `mqttd` writes in its data directory.
    pub fn admin_token_file(&self) -> std::path::PathBuf {
        self.admin_token_file_in(self.dir.path())
    }

    /// The admin token file `mqttd` writes in `data_dir`, once it exists.
    pub fn admin_token_file_in(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        let path = data_dir.join("admin.token");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "mqttd wrote no {}", path.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        path
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw MQTT client over TCP.
pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    pub version: ProtocolVersion,
}

/// A CONNECT with sensible defaults.
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive: 60,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

impl Client {
    /// Opens a TCP connection without sending anything.
    pub async fn open(port: u16, version: ProtocolVersion) -> Client {
        Client::open_at("127.0.0.1", port, version).await
    }

    /// Opens a TCP connection to `ip:port` without sending anything.
    pub async fn open_at(ip: &str, port: u16, version: ProtocolVersion) -> Client {
        let stream = TcpStream::connect((ip, port)).await.expect("connect");
        stream.set_nodelay(true).ok();
        Client { stream, buf: BytesMut::new(), version }
    }

    /// Connects to 127.0.0.1:`port` from the source address `source` (a
    /// loopback address: the broker sees the client at it) with `connect`.
    #[allow(dead_code)]
    pub async fn connect_from(source: &str, port: u16, connect: Connect) -> (Client, ConnAck) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(format!("{source}:0").parse().expect("source address")).expect("bind the source");
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
        stream.set_nodelay(true).ok();
        let mut client = Client { stream, buf: BytesMut::new(), version: connect.protocol };
        client.send(&Packet::Connect(Box::new(connect))).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with `connect` and returns the client and its CONNACK.
    pub async fn connect_with(port: u16, connect: Connect) -> (Client, ConnAck) {
        Client::connect_with_at("127.0.0.1", port, connect).await
    }

    /// Connects to `ip:port` with `connect`; returns the client and its CONNACK.
    pub async fn connect_with_at(ip: &str, port: u16, connect: Connect) -> (Client, ConnAck) {
        let mut client = Client::open_at(ip, port, connect.protocol).await;
        client.send(&Packet::Connect(Box::new(connect))).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects and asserts success.
    pub async fn connect(port: u16, version: ProtocolVersion, client_id: &str, clean_start: bool) -> Client {
        let (client, ack) = Client::connect_with(port, connect_packet(version, client_id, clean_start)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK {ack:?}");
        client
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        mqtt_codec::encode(packet, self.version, &mut out).expect("encode");
        self.send_bytes(&out).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may have closed already; tests look at what comes back.
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next packet, or `None` if the connection closed or nothing came in time.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match mqtt_codec::decode(&mut self.buf, self.version, 1 << 28) {
                Ok(Some(packet)) => return Some(packet),
                Ok(None) => {}
                Err(error) => panic!("client could not decode the broker's packet: {error}"),
            }
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT).await
    }

    /// Asserts that the broker closes the connection (after any packets it
    /// sends first, which are returned).
    pub async fn expect_close(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Ok(Some(packet)) = mqtt_codec::decode(&mut self.buf, self.version, 1 << 28) {
                seen.push(packet);
            }
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return seen,
                Ok(Ok(_)) => {}
                Err(_) => panic!("connection still open; received {seen:?}"),
            }
        }
    }

    /// Asserts the broker sends DISCONNECT with `reason` (5.0) and closes.
    pub async fn expect_disconnect(&mut self, reason: ReasonCode) {
        let seen = self.expect_close().await;
        if self.version.is_v5() {
            let found = seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == reason));
            assert!(found, "expected DISCONNECT {reason:?}, got {seen:?}");
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.subscribe_with(filter, SubscriptionOptions { qos, ..Default::default() }, None).await;
    }

    pub async fn subscribe_with(&mut self, filter: &str, options: SubscriptionOptions, id: Option<u32>) {
        let mut subscribe =
            Subscribe { packet_id: 1, filters: vec![(filter.to_string(), options)], ..Default::default() };
        subscribe.properties.subscription_identifier = id;
        self.send(&Packet::Subscribe(subscribe)).await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => assert!(ack.reasons[0].is_success(), "SUBACK {ack:?}"),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and, for QoS 1/2, completes the exchange.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, packet_id: u16) {
        let publish = Publish {
            qos,
            topic: topic.to_string(),
            packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
            payload: bytes::Bytes::copy_from_slice(payload),
            ..Default::default()
        };
        self.send(&Packet::Publish(publish)).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert!(matches!(self.recv().await, Some(Packet::PubAck(_)))),
            QoS::ExactlyOnce => {
                assert!(matches!(self.recv().await, Some(Packet::PubRec(_))));
                self.send(&Packet::PubRel(PubAck { packet_id, ..Default::default() })).await;
                assert!(matches!(self.recv().await, Some(Packet::PubComp(_))));
            }
        }
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason (3.1.1: success).
    #[allow(dead_code)]
    pub async fn publish_reason(&mut self, topic: &str, payload: &[u8], packet_id: u16) -> ReasonCode {
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: Some(packet_id),
            payload: payload.to_vec().into(),
            ..Default::default()
        };
        self.send(&Packet::Publish(publish)).await;
        match self.recv().await {
            Some(Packet::PubAck(ack)) => ack.reason,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH (panics on anything else or nothing).
    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(publish)) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives for `wait` and that the connection is
    /// still open at the end (a closed connection is not silence: tests
    /// that expect the broker to close use [`Client::expect_close`]).
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(Some(packet)) = mqtt_codec::decode(&mut self.buf, self.version, 1 << 28) {
            panic!("expected silence, got {packet:?}");
        }
        self.buf.reserve(4096);
        match tokio::time::timeout(wait, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => {}
            Ok(Ok(0)) => panic!("expected silence, but the broker closed the connection"),
            Ok(Err(error)) => panic!("expected silence, but the connection failed: {error}"),
            Ok(Ok(_)) => match mqtt_codec::decode(&mut self.buf, self.version, 1 << 28) {
                Ok(Some(packet)) => panic!("expected silence, got {packet:?}"),
                other => panic!("expected silence, got bytes ({other:?})"),
            },
        }
    }
}

/// Connects `id` with a username and password; answers the client and the
/// CONNACK's reason (a 3.1.1 return code read as the 5.0 reason it stands for).
#[allow(dead_code)]
pub async fn login(
    port: u16,
    version: ProtocolVersion,
    id: &str,
    user: &str,
    password: &str,
) -> (Client, ReasonCode) {
    let mut connect = connect_packet(version, id, true);
    connect.username = Some(user.into());
    connect.password = Some(password.as_bytes().to_vec().into());
    let (client, ack) = Client::connect_with(port, connect).await;
    (client, ack.reason)
}

/// Encodes a fixed header plus body by hand (for malformed packets).
pub fn raw_packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(first_byte);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out.to_vec()
}

/// Both protocol versions the broker must serve alike.
pub const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

/// Logs in as `user` (v5) while `talker`, subscribed to `t/#`, publishes
/// and receives five messages: a CONNECT that waits on a backend must not
/// hold up clients that are in. Returns the CONNECT's reason and how long
/// it took.
pub async fn login_while_talking(
    port: u16,
    talker: &mut Client,
    id: &str,
    user: &str,
    password: &str,
) -> (ReasonCode, Duration) {
    let started = std::time::Instant::now();
    let (id, user, password) = (id.to_owned(), user.to_owned(), password.to_owned());
    let pending =
        tokio::spawn(async move { login(port, ProtocolVersion::V5, &id, &user, &password).await.1 });
    for n in 0..5u8 {
        talker.publish("t/x", &[n], QoS::AtMostOnce, 0).await;
        assert_eq!(&talker.expect_publish().await.payload[..], &[n], "a client that is in keeps publishing");
    }
    let reason = pending.await.expect("the login task");
    (reason, started.elapsed())
}

/// The first reason code of the SUBACK to a subscription to `filter`.
pub async fn subscribe_reason(client: &mut Client, filter: &str) -> ReasonCode {
    let filters = vec![(filter.to_owned(), SubscriptionOptions::default())];
    client.send(&Packet::Subscribe(Subscribe { packet_id: 1, filters, ..Default::default() })).await;
    match client.recv().await {
        Some(Packet::SubAck(ack)) => ack.reasons[0],
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Runs `mqttctl` against `broker`'s embedded control plane at `server`,
/// with the admin token the broker wrote in its data directory; asserts it
/// succeeds.
pub fn mqttctl(broker: &Broker, server: &str, args: &[&str]) {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_mqttd")).with_file_name("mqttctl");
    assert!(path.exists(), "{} is missing: run `cargo build -p mqttctl` first", path.display());
    let output = Command::new(path)
        .args(["--server", server])
        .arg("--token-file")
        .arg(broker.admin_token_file())
        .args(args)
        .env_remove("MQTTD_TOKEN")
        .output()
        .expect("run mqttctl");
    assert!(output.status.success(), "mqttctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Retries `probe` until it returns true (for 10 s): provisioning reaches
/// the data plane through the Watch stream a moment after mqttctl returns.
pub async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !probe().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PEM of a CA made for one test, and of a certificate and key it signed.
#[allow(dead_code)]
pub struct TestPki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A CA named `name`, and a certificate it signed for `names` (IP
/// addresses or DNS names; the first is also the common name), for server
/// and client use.
#[allow(dead_code)]
pub fn test_pki(name: &str, names: &[&str]) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} ca"));
    let ca = params.self_signed(&ca_key).expect("a self-signed CA");
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|name| name.to_string()).collect::<Vec<_>>())
            .expect("certificate parameters");
    if let Some(first) = names.first() {
        params.distinguished_name.push(rcgen::DnType::CommonName, *first);
    }
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("a certificate");
    TestPki { ca: ca.pem(), cert: cert.pem(), key: key.serialize_pem() }
}
