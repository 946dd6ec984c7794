//! The standalone broker's credentials, as an operator meets them: the
//! admin token file `mqttd` writes in `./data` (0600 in a 0700 directory,
//! reused on restart), `mqttctl` working next to it without flags, and no
//! admin call on loopback without a token.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{connect_packet, Broker, Client};
use mqtt_codec::{ProtocolVersion, ReasonCode};

/// Runs mqttctl in `cwd` with no token flag and no MQTTD_TOKEN.
fn mqttctl_in(cwd: &Path, server: &str, args: &[&str]) -> Output {
    let path = Path::new(env!("CARGO_BIN_EXE_mqttd")).with_file_name("mqttctl");
    assert!(path.exists(), "{} is missing: run `cargo build -p mqttctl` first", path.display());
    Command::new(path)
        .current_dir(cwd)
        .args(["--server", server])
        .args(args)
        .env_remove("MQTTD_TOKEN")
        .output()
        .expect("run mqttctl")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

async fn login(port: u16, user: &str, password: &str) -> ReasonCode {
    let mut connect = connect_packet(ProtocolVersion::V5, "c", true);
    connect.username = Some(user.into());
    connect.password = Some(password.as_bytes().to_vec().into());
    Client::connect_with(port, connect).await.1.reason
}

#[tokio::test]
async fn mqttctl_works_next_to_a_standalone_mqttd_and_nowhere_without_a_token() {
    // Data in ./data of the broker's working directory, as with no flags.
    let (mut broker, grpc) = Broker::start_with_grpc(&["node.data_dir=data"]);
    let home = broker.dir.path().to_owned();
    let data = home.join("data");
    let token_file = broker.admin_token_file_in(&data);
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(&data), 0o700);
    let token = std::fs::read_to_string(&token_file).expect("token");
    assert!(token.trim_end().len() >= 32, "a long random token: {token:?}");

    // Elsewhere, without a token: refused, on loopback too.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let refused = mqttctl_in(elsewhere.path(), &grpc, &["users", "add", "eve", "--password", "pw"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wants a token"), "{refused:?}");

    // Next to mqttd, no flags: it finds ./data/admin.token.
    let added = mqttctl_in(&home, &grpc, &["users", "add", "alice", "--password", "pw"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    // The embedded data plane follows with its in-process credential.
    let deadline = Instant::now() + Duration::from_secs(10);
    while login(broker.port, "alice", "pw").await != ReasonCode::SUCCESS {
        assert!(Instant::now() < deadline, "alice never reached the data plane");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(login(broker.port, "eve", "pw").await, ReasonCode::BAD_USER_NAME_OR_PASSWORD);

    // A restart reuses the token file.
    broker.restart();
    assert_eq!(std::fs::read_to_string(&token_file).expect("token"), token);
    let listed = mqttctl_in(&home, &grpc, &["users", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("alice"), "{listed:?}");
}

/// A CA and a certificate for 127.0.0.1 (server and client use), as files
/// in `dir`: `{name}-ca.pem`, `{name}.pem`, `{name}.key`.
fn pki(dir: &Path, name: &str) {
    let pki = common::test_pki(name, &["127.0.0.1"]);
    std::fs::write(dir.join(format!("{name}-ca.pem")), pki.ca).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), pki.cert).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), pki.key).unwrap();
}

#[tokio::test]
async fn grpc_over_mutual_tls_in_standalone_mode() {
    let certs = tempfile::tempdir().expect("temp dir");
    pki(certs.path(), "good");
    pki(certs.path(), "bad");
    let file = |name: &str| certs.path().join(name).display().to_string();
    let settings = [
        "node.data_dir=data".to_owned(),
        "controlplane.tls.enabled=true".to_owned(),
        "controlplane.tls.verify_peer=true".to_owned(),
        format!("controlplane.tls.certfile={}", file("good.pem")),
        format!("controlplane.tls.keyfile={}", file("good.key")),
        format!("controlplane.tls.cacertfile={}", file("good-ca.pem")),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let (broker, grpc) = Broker::start_with_grpc(&settings);
    let home = broker.dir.path().to_owned();
    broker.admin_token_file_in(&home.join("data"));
    let https = grpc.replacen("http://", "https://", 1);
    let (good_ca, good_cert, good_key) = (file("good-ca.pem"), file("good.pem"), file("good.key"));
    let tls = ["--cacert", &good_ca, "--cert", &good_cert, "--key", &good_key];

    // The right CA and a client certificate: works (token from ./data).
    let mut args: Vec<&str> = tls.to_vec();
    args.extend(["users", "add", "alice", "--password", "pw"]);
    let added = mqttctl_in(&home, &https, &args);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    // The embedded data plane follows over TLS.
    let deadline = Instant::now() + Duration::from_secs(10);
    while login(broker.port, "alice", "pw").await != ReasonCode::SUCCESS {
        assert!(Instant::now() < deadline, "alice never reached the data plane");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // No client certificate; a wrong CA; a foreign client certificate; plain http.
    let bad_ca = file("bad-ca.pem");
    let (bad_cert, bad_key) = (file("bad.pem"), file("bad.key"));
    let attempts: [Vec<&str>; 4] = [
        vec!["--cacert", &good_ca],
        vec!["--cacert", &bad_ca, "--cert", &good_cert, "--key", &good_key],
        vec!["--cacert", &good_ca, "--cert", &bad_cert, "--key", &bad_key],
        vec![],
    ];
    for (i, mut args) in attempts.into_iter().enumerate() {
        args.extend(["users", "list"]);
        let server = if i == 3 { &grpc } else { &https };
        let refused = mqttctl_in(&home, server, &args);
        assert!(!refused.status.success(), "attempt {i} got through: {args:?}");
    }
}
