//! A fleet harness: control-plane and data-plane `mqttd` processes on
//! 127.0.0.x, driven with `mqttctl` and the Watch stream (for tests/cluster.rs
//! and tests/fleet.rs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqtt_codec::{ProtocolVersion, ReasonCode};

use super::{connect_packet, Client};

/// `mqttctl`, built next to `mqttd` by `cargo build --workspace`.
pub fn mqttctl_path() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_mqttd")).with_file_name("mqttctl");
    assert!(path.exists(), "{} is missing: run `cargo build -p mqttctl` first", path.display());
    path
}

/// The members' shared token, given to `mqttd` in a file and to `mqttctl`
/// in `MQTTD_TOKEN` (never on a command line).
pub const MEMBER_TOKEN: &str = "cluster-member-secret";

/// Writes `dir/NAME` holding `token` (mode 0600); returns its path. The
/// file is replaced by a rename, never truncated in place: members started
/// a moment earlier may be reading it.
pub fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let staging = dir.join(format!("{name}.{}", super::free_port()));
    std::fs::write(&staging, format!("{token}\n")).expect("write token file");
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600)).expect("chmod token file");
    std::fs::rename(&staging, &path).expect("rename token file");
    path
}

/// Runs mqttctl with the member token; returns (success, stdout, stderr).
pub fn mqttctl(server: &str, args: &[&str]) -> (bool, String, String) {
    mqttctl_with_token(server, MEMBER_TOKEN, args)
}

/// Runs mqttctl with `token` in MQTTD_TOKEN; returns (success, stdout, stderr).
pub fn mqttctl_with_token(server: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(mqttctl_path())
        .args(["--server", server, "--timeout", "5"])
        .args(args)
        .env("MQTTD_TOKEN", token)
        .output()
        .expect("run mqttctl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

pub fn status(server: &str) -> Option<serde_json::Value> {
    let (ok, out, _) = mqttctl(server, &["--json", "cluster", "status"]);
    if !ok {
        return None;
    }
    serde_json::from_str(out.trim()).ok()
}

/// The routes the control plane holds (filter -> data-plane nodes), read
/// from the snapshot a Watch stream starts with, as a data-plane node sees
/// them; `None` while the control plane does not answer.
pub async fn routes(server: &str) -> Option<Vec<(String, Vec<u64>)>> {
    let snapshot = snapshot(server).await?;
    Some(snapshot.routes.into_iter().map(|route| (route.topic_filter, route.node_ids)).collect())
}

/// The shared groups the control plane holds: (group, filter) -> members
/// as (node, client id); `None` while the control plane does not answer.
pub async fn share_groups(server: &str) -> Option<Vec<((String, String), Vec<(u64, String)>)>> {
    let snapshot = snapshot(server).await?;
    let groups = snapshot
        .share_groups
        .into_iter()
        .map(|g| {
            let members = g.members.into_iter().map(|m| (m.node_id, m.client_id)).collect();
            ((g.group, g.topic_filter), members)
        })
        .collect();
    Some(groups)
}

/// The control plane's whole state, as a data-plane node's Watch stream
/// starts with it.
pub async fn snapshot(server: &str) -> Option<proto::controlplane::StateSnapshot> {
    use proto::controlplane::{control_plane_client::ControlPlaneClient, watch_event::Event, WatchRequest};
    let channel = tonic::transport::Endpoint::from_shared(server.to_string()).ok()?.connect().await.ok()?;
    let token = proto::auth::BearerToken::new(Some(MEMBER_TOKEN)).ok()?;
    let mut client = ControlPlaneClient::with_interceptor(channel, token).max_decoding_message_size(64 << 20);
    let mut stream = client.watch(WatchRequest { node_id: 0, last_index: None }).await.ok()?.into_inner();
    let Event::Snapshot(mut snapshot) = stream.message().await.ok()??.event? else { return None };
    while snapshot.parts_follow {
        let Event::SnapshotPart(part) = stream.message().await.ok()??.event? else { return None };
        snapshot.absorb(part);
    }
    Some(snapshot)
}

/// The Raft index the control plane's state is at (its Watch snapshot's).
pub async fn state_index(server: &str) -> Option<u64> {
    Some(snapshot(server).await?.index)
}

/// Whether data-plane node `node` holds a route for `filter`.
pub async fn has_route(server: &str, filter: &str, node: u64) -> Option<bool> {
    let routes = routes(server).await?;
    Some(routes.iter().any(|(f, nodes)| f == filter && nodes.contains(&node)))
}

pub async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where a process's log goes: a file in `MQTTD_TEST_LOG_DIR` when set
/// (named by the process's role and node id), else nowhere.
fn log_file(args: &[String]) -> Stdio {
    let Ok(dir) = std::env::var("MQTTD_TEST_LOG_DIR") else { return Stdio::null() };
    let role = args.iter().find(|a| *a == "controlplane" || *a == "dataplane").cloned().unwrap_or_default();
    let id = args.iter().find_map(|a| a.strip_prefix("node.id=")).unwrap_or("0");
    let name = format!("{role}-{id}-{}.log", std::process::id());
    match std::fs::OpenOptions::new().create(true).append(true).open(std::path::Path::new(&dir).join(name)) {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    }
}

pub struct Process {
    pub child: Child,
    pub args: Vec<String>,
}

impl Process {
    pub fn spawn(args: Vec<String>) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log_file(&args))
            .spawn()
            .expect("spawn mqttd");
        Process { child, args }
    }

    /// `mqttd` with `args` inside the network namespace `netns`.
    pub fn spawn_in(netns: &str, args: Vec<String>) -> Process {
        let mut full: Vec<String> = vec!["netns".into(), "exec".into(), netns.into()];
        full.push(env!("CARGO_BIN_EXE_mqttd").into());
        full.extend(args.iter().cloned());
        let child = Command::new("ip")
            .args(&full)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mqttd in a network namespace");
        Process { child, args }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.kill9();
        *self = Process::spawn(self.args.clone());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A control-plane member on its own loopback address, with the member token.
pub fn controlplane(id: u64, ip: &str, port: u16, dir: &Path, bootstrap: bool) -> Process {
    let token = token_file(dir, "member.token", MEMBER_TOKEN);
    Process::spawn(vec![
        "controlplane".into(),
        "--set".into(),
        format!("controlplane.token_file={}", token.display()),
        "--set".into(),
        format!("node.id={id}"),
        "--set".into(),
        format!("node.data_dir={}", dir.join(format!("cp{id}")).display()),
        "--set".into(),
        format!("controlplane.bind={ip}:{port}"),
        "--set".into(),
        format!("controlplane.bootstrap={bootstrap}"),
        "--set".into(),
        "controlplane.dataplane_down_after=2".into(),
        "--set".into(),
        "controlplane.dataplane_grace_period=2".into(),
    ])
}

/// A data-plane node with the member token (a single-token cluster).
pub fn dataplane(id: u64, port: u16, members: &str, dir: &Path) -> Process {
    let token = token_file(dir, "member.token", MEMBER_TOKEN);
    dataplane_with(id, port, members, dir, &token)
}

/// A data-plane node presenting the token in `token_file`, on 127.0.0.1.
pub fn dataplane_with(id: u64, port: u16, members: &str, dir: &Path, token_file: &Path) -> Process {
    dataplane_on(id, "127.0.0.1", port, members, dir, token_file, &[])
}

/// A data-plane node on `ip` (its MQTT listener at `port`, its peer link at
/// a free port), presenting the token in `token_file`, with `extra`
/// `--set` settings (later ones win).
pub fn dataplane_on(
    id: u64,
    ip: &str,
    port: u16,
    members: &str,
    dir: &Path,
    token_file: &Path,
    extra: &[&str],
) -> Process {
    Process::spawn(dataplane_args(id, ip, port, members, dir, token_file, extra))
}

/// The command line of [`dataplane_on`].
pub fn dataplane_args(
    id: u64,
    ip: &str,
    port: u16,
    members: &str,
    dir: &Path,
    token_file: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "dataplane".into(),
        "--set".into(),
        format!("dataplane.token_file={}", token_file.display()),
        "--set".into(),
        format!("node.id={id}"),
        "--set".into(),
        format!("node.name=dp{id}"),
        "--set".into(),
        format!("node.data_dir={}", dir.join(format!("dp{id}")).display()),
        "--set".into(),
        format!("listeners.tcp.bind={ip}:{port}"),
        "--set".into(),
        format!("dataplane.peer_bind={ip}:{}", super::free_port()),
        "--set".into(),
        "listeners.ws.enabled=false".into(),
        "--set".into(),
        format!("dataplane.controlplane={members}"),
        "--set".into(),
        "dataplane.heartbeat_interval=1".into(),
        "--set".into(),
        "auth.allow_anonymous=deny".into(),
        "--set".into(),
        "sys.interval=0".into(),
    ];
    for setting in extra {
        args.push("--set".into());
        args.push(setting.to_string());
    }
    args
}

pub async fn connect_as(
    port: u16,
    client_id: &str,
    user: &str,
    password: &str,
) -> (Option<Client>, ReasonCode) {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id, true);
    connect.username = Some(user.into());
    connect.password = Some(password.as_bytes().to_vec().into());
    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (None, ReasonCode::SERVER_UNAVAILABLE);
    };
    drop(stream);
    let (client, ack) = Client::connect_with(port, connect).await;
    (ack.reason.is_success().then_some(client), ack.reason)
}

/// Waits until `user` can log in on the data plane at `port`.
pub async fn wait_login(port: u16, user: &str, password: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (client, reason) = connect_as(port, &format!("probe-{user}"), user, password).await;
        if let Some(client) = client {
            return client;
        }
        assert!(Instant::now() < deadline, "{user} still refused ({reason:?})");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

pub fn leader_of(server: &str) -> Option<u64> {
    status(server).and_then(|s| s["leader"].as_u64())
}
