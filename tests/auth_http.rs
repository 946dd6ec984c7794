//! The `http` authenticator against a small HTTP service run by the test:
//! allow, deny (0x86 / return code 4), ignore (the next authenticator
//! decides), a service that hangs or is down (the configured outcome within
//! the timeout, while connected clients keep publishing), a service back
//! again, answers cached, and usernames that try to break out of the
//! request; and the `http` authorizer, whose rules for each client the
//! service gives.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{login, login_while_talking, subscribe_reason, Broker, VERSIONS};
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The test's HTTP service: POST with a JSON body; `alice`/`secret` is
/// allowed, `root`/`pw` as a superuser, `bob` denied, anyone else ignored.
/// It records every username it was asked about, and can be made to hang.
#[derive(Default)]
struct Service {
    hang: AtomicBool,
    requests: AtomicUsize,
    usernames: Names,
}

/// Usernames the service was asked about.
#[derive(Default)]
struct Names(parking_lot::Mutex<Vec<String>>);

impl Names {
    fn push(&self, name: String) {
        self.0.lock().push(name);
    }

    fn contains(&self, name: &str) -> bool {
        self.0.lock().iter().any(|seen| seen == name)
    }
}

async fn serve_one(service: Arc<Service>, mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let read = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        buf.extend_from_slice(&chunk[..read]);
        if let Some(at) = buf.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| {
                    line.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            break (at + 4, length);
        }
    };
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buf.extend_from_slice(&chunk[..read]),
        }
    }
    service.requests.fetch_add(1, Ordering::SeqCst);
    if service.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
    if buf.starts_with(b"POST /acl ") {
        let (status, answer) = match body["clientid"].as_str().unwrap_or("") {
            "dev-1" => (
                "200 OK",
                r##"{"rules": [
                    {"permission": "deny", "action": "all", "topic": "dev/secret/#"},
                    {"permission": "allow", "action": "publish", "topic": "dev/${clientid}/#", "qos": [0, 1]},
                    {"permission": "allow", "action": "subscribe", "topic": "eq cmd/#"},
                    {"permission": "deny", "action": "all", "topic": "#"}
                ]}"##,
            ),
            "teapot" => ("500 Internal Server Error", ""),
            "bad-rules" => {
                ("200 OK", r#"{"rules": [{"permission": "allow", "action": "write", "topic": "t"}]}"#)
            }
            _ => ("204 No Content", ""),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        return;
    }
    let username = body["username"].as_str().unwrap_or("").to_owned();
    let password = body["password"].as_str().unwrap_or("");
    service.usernames.push(username.clone());
    let answer = match (username.as_str(), password) {
        ("alice", "secret") => r#"{"result": "allow"}"#,
        ("root", "pw") => r#"{"result": "allow", "is_superuser": true}"#,
        ("alice", _) | ("bob", _) => r#"{"result": "deny"}"#,
        ("teapot", _) => "not json",
        _ => r#"{"result": "ignore"}"#,
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

/// Serves on `listener` until the task is aborted.
fn run(service: Arc<Service>, listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = Vec::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            connections.push(tokio::spawn(serve_one(service.clone(), stream)));
        }
    })
}

/// The reason a client of `version` gets (the test client reads a 3.1.1
/// return code as the 5.0 reason it stands for).
fn expected(_version: ProtocolVersion, reason: ReasonCode) -> ReasonCode {
    reason
}

fn chain(url: &str, on_error: &str, extra: &str) -> String {
    format!(
        "auth.authenticators=[{{ type = \"http\", url = \"{url}\", timeout_ms = 400, on_error = \"{on_error}\"{extra} }}, {{ type = \"builtin\" }}]"
    )
}

#[tokio::test]
async fn an_http_service_decides_who_connects_and_its_failures_follow_on_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_addr = listener.local_addr().unwrap();
    let service = Arc::new(Service::default());
    let mut server = run(service.clone(), listener);
    let url = format!("http://{service_addr}/auth");
    // No cache here: every CONNECT asks the service.
    let broker = Broker::start(&[&chain(&url, "deny", ", cache_entries = 0")]);
    let port = broker.port;

    for version in VERSIONS {
        let (_alice, reason) = login(port, version, "a", "alice", "secret").await;
        assert_eq!(reason, expected(version, ReasonCode::SUCCESS), "{version:?}");
        let (_c, reason) = login(port, version, "a2", "alice", "wrong").await;
        assert_eq!(reason, expected(version, ReasonCode::BAD_USER_NAME_OR_PASSWORD), "{version:?}");
        // Denied by the service, though the built-in provider would let a
        // loopback client in.
        let (_c, reason) = login(port, version, "b", "bob", "anything").await;
        assert_eq!(reason, expected(version, ReasonCode::BAD_USER_NAME_OR_PASSWORD), "{version:?}");
        // Ignored: the built-in provider decides (anonymous from loopback).
        let (_c, reason) = login(port, version, "c", "carol", "x").await;
        assert_eq!(reason, expected(version, ReasonCode::SUCCESS), "{version:?}");
        // An answer that is not understood is a failure: on_error = deny.
        let (_c, reason) = login(port, version, "t", "teapot", "x").await;
        assert_eq!(reason, expected(version, ReasonCode::SERVER_UNAVAILABLE), "{version:?}");
    }
    // A username that tries to break out of the JSON reaches the service as
    // one string, and is not let in.
    let sneaky = r#"alice", "password": "secret"#;
    let (_c, reason) = login(port, ProtocolVersion::V5, "s", sneaky, "nope").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "ignored by the service, then the loopback anonymous policy");
    assert!(service.usernames.contains(sneaky), "the service saw the username as it was sent");
    let (_c, reason) = login(port, ProtocolVersion::V5, "s2", "alice", "${password}").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "a placeholder in a value is not expanded");

    // A client that is in keeps publishing while the service hangs.
    let (mut alice, _) = login(port, ProtocolVersion::V5, "a", "alice", "secret").await;
    alice.subscribe("t/#", QoS::AtMostOnce).await;
    service.hang.store(true, Ordering::SeqCst);
    let (reason, took) = login_while_talking(port, &mut alice, "h", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "a hanging service: on_error = deny");
    assert!(took < Duration::from_secs(3), "answered within the timeout: {took:?}");

    // Down: refused connections give the same outcome, fast.
    server.abort();
    let _ = server.await;
    service.hang.store(false, Ordering::SeqCst);
    let (_c, reason) = login(port, ProtocolVersion::V5, "d", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SERVER_UNAVAILABLE, "service down: on_error = deny");
    // Back on the same address: used again.
    let listener = TcpListener::bind(service_addr).await.unwrap();
    server = run(service.clone(), listener);
    let (_c, reason) = login(port, ProtocolVersion::V5, "e", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "the service is used again");
    server.abort();
}

#[tokio::test]
async fn on_error_ignore_asks_the_next_and_answers_are_cached() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_addr = listener.local_addr().unwrap();
    let service = Arc::new(Service::default());
    let server = run(service.clone(), listener);
    let url = format!("http://{service_addr}/auth");
    let broker =
        Broker::start(&[&chain(&url, "ignore", ""), "auth.allow_anonymous=deny", "auth.acl_no_match=deny"]);
    let port = broker.port;

    let (_c, reason) = login(port, ProtocolVersion::V5, "r", "root", "pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let asked = service.requests.load(Ordering::SeqCst);
    // The same request (the client id is part of it) is answered from the
    // cache.
    for _ in 0..5 {
        let (_c, reason) = login(port, ProtocolVersion::V5, "r", "root", "pw").await;
        assert_eq!(reason, ReasonCode::SUCCESS);
    }
    assert_eq!(service.requests.load(Ordering::SeqCst), asked, "answered from the cache");
    let (_c, reason) = login(port, ProtocolVersion::V5, "r", "root", "wrong").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "the service ignores it, the built-in refuses");
    assert_eq!(service.requests.load(Ordering::SeqCst), asked + 1, "a different password is asked");

    // A superuser from the service passes every authorizer; others meet
    // acl_no_match = deny.
    let (mut root, _) = login(port, ProtocolVersion::V5, "rs", "root", "pw").await;
    assert_eq!(subscribe_reason(&mut root, "any/#").await, ReasonCode::GRANTED_QOS_0);
    let (mut alice, _) = login(port, ProtocolVersion::V5, "al", "alice", "secret").await;
    assert_eq!(subscribe_reason(&mut alice, "any/#").await, ReasonCode::NOT_AUTHORIZED);

    server.abort();
    let _ = server.await;
    // Down, on_error = ignore: the built-in provider decides (and refuses:
    // no anonymous clients, no such user).
    let (_c, reason) = login(port, ProtocolVersion::V5, "x", "alice", "secret").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // The cached answer still lets root in.
    let (_c, reason) = login(port, ProtocolVersion::V5, "r", "root", "pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS, "cached");
}

#[test]
fn bad_http_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_mqttd"))
        .current_dir(dir.path())
        .args(["--set", "listeners.tcp.bind=127.0.0.1:0", "--set", "listeners.ws.enabled=false"])
        .args(["--set", "controlplane.bind=127.0.0.1:0"])
        .args(["--set", &format!("node.data_dir={}", dir.path().display())])
        .args([
            "--set",
            "auth.authenticators=[{ type = \"http\", url = \"http://x/\", body = { u = \"${user}\" } }]",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.authenticators entry 1") && stderr.contains("${user}"), "{stderr}");
}

/// The `http` authorizer: the service's rules for a client decide (rule
/// order, placeholders, QoS, `eq`), no rules leave it to acl_no_match, and
/// a service that fails (500, rules that do not parse, a hang) makes
/// on_error = deny refuse everything, within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_service_gives_each_client_its_rules() {
    let service = Arc::new(Service::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/acl", listener.local_addr().unwrap());
    let server = run(service.clone(), listener);
    let authz = format!(
        "auth.authorizers=[{{ type = \"http\", url = \"{url}\", timeout_ms = 400, on_error = \"deny\" }}]"
    );
    let broker = Broker::start(&[&authz, "auth.acl_no_match=allow"]);
    let port = broker.port;

    let mut dev = common::Client::connect(port, ProtocolVersion::V5, "dev-1", true).await;
    let reason = dev.publish_reason("dev/dev-1/up", b"x", 1).await;
    assert!(reason == ReasonCode::SUCCESS || reason == ReasonCode::NO_MATCHING_SUBSCRIBERS, "{reason:?}");
    assert_eq!(
        dev.publish_reason("dev/dev-2/up", b"x", 2).await,
        ReasonCode::NOT_AUTHORIZED,
        "the last rule"
    );
    assert_eq!(
        dev.publish_reason("dev/secret/up", b"x", 3).await,
        ReasonCode::NOT_AUTHORIZED,
        "the first rule"
    );
    assert_eq!(subscribe_reason(&mut dev, "cmd/#").await, ReasonCode::GRANTED_QOS_0, "eq: this very filter");
    assert_eq!(subscribe_reason(&mut dev, "cmd/x").await, ReasonCode::NOT_AUTHORIZED, "eq is no wildcard");

    // No rules (204): acl_no_match = allow decides.
    let mut other = common::Client::connect(port, ProtocolVersion::V5, "dev-2", true).await;
    assert_eq!(subscribe_reason(&mut other, "anything/#").await, ReasonCode::GRANTED_QOS_0);

    // The service fails: on_error = deny refuses all this source judges.
    for failing in ["teapot", "bad-rules"] {
        let mut client = common::Client::connect(port, ProtocolVersion::V5, failing, true).await;
        assert_eq!(
            subscribe_reason(&mut client, "anything/#").await,
            ReasonCode::NOT_AUTHORIZED,
            "{failing}"
        );
    }
    service.hang.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let mut late = common::Client::connect(port, ProtocolVersion::V5, "dev-3", true).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "CONNACK within the timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(
        subscribe_reason(&mut late, "anything/#").await,
        ReasonCode::NOT_AUTHORIZED,
        "a hanging service"
    );
    // The connected client keeps its rules.
    assert_eq!(subscribe_reason(&mut dev, "cmd/#").await, ReasonCode::GRANTED_QOS_0);
    server.abort();
}
