//! Test helpers: start control-plane members, run `mqttctl`, read its
//! answer.
//!
//! Each member keeps its data in `ROOT/data`, and `mqttctl` runs with
//! `ROOT` as its working directory, so it finds that member's
//! `./data/admin.token` by itself, as next to a standalone `mqttd`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use controlplane::{ControlPlane, ControlPlaneConfig, ControlPlaneHandle, NodeId};
use parking_lot::Mutex;
use serde_json::Value;
use tempfile::TempDir;

pub const PATIENCE: Duration = Duration::from_secs(20);

/// Endpoint → the directory holding that member's `data/`.
static MEMBER_DIRS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

fn member_dir(server: &str) -> Option<PathBuf> {
    let dirs = MEMBER_DIRS.lock();
    dirs.iter().find(|(endpoint, _)| endpoint == server).map(|(_, dir)| dir.clone())
}

/// A running member and the directory it owns (its data is in `data/`).
pub struct Member {
    pub handle: ControlPlaneHandle,
    _root: TempDir,
}

impl Member {
    pub fn endpoint(&self) -> String {
        self.handle.endpoint()
    }

    pub async fn shutdown(self) -> Result<()> {
        Ok(self.handle.shutdown().await?)
    }
}

/// Starts a member on a free port with quick Raft timings; `bootstrap`
/// makes it the first voter of a new cluster, else it waits to be joined.
pub async fn start(node_id: NodeId, bootstrap: bool, token: Option<&str>) -> Result<Member> {
    let root = tempfile::tempdir()?;
    let any_port: SocketAddr = "127.0.0.1:0".parse()?;
    let mut config = ControlPlaneConfig::new(node_id, root.path().join("data"), any_port);
    config.bootstrap = bootstrap;
    config.token = token.map(str::to_owned);
    config.heartbeat_interval = Duration::from_millis(100);
    config.election_timeout_min = Duration::from_millis(600);
    config.election_timeout_max = Duration::from_millis(1200);
    let handle = ControlPlane::start(config).await?;
    if bootstrap {
        let leader = handle.wait_for_leader(PATIENCE).await;
        if leader != Some(node_id) {
            bail!("node {node_id} did not become leader (leader: {leader:?})");
        }
    }
    MEMBER_DIRS.lock().push((handle.endpoint(), root.path().to_owned()));
    Ok(Member { handle, _root: root })
}

/// A bootstrapped single-member cluster (the standalone shape).
pub async fn single(token: Option<&str>) -> Result<Member> {
    start(1, true, token).await
}

/// What one run of `mqttctl` did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Asserts success with nothing on stderr; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "mqttctl failed: {self:?}");
        assert_eq!(self.stderr, "", "mqttctl succeeded but wrote to stderr");
        &self.stdout
    }

    /// Asserts success and parses stdout as exactly one JSON object.
    #[track_caller]
    pub fn json(&self) -> Value {
        let stdout = self.ok();
        let value: Value = serde_json::from_str(stdout).unwrap_or_else(|error| panic!("{error}: {stdout:?}"));
        assert!(value.is_object(), "not an object: {value}");
        value
    }

    /// Asserts a non-zero exit with exactly one line on stderr and nothing
    /// on stdout; returns that line.
    #[track_caller]
    pub fn failure(&self) -> &str {
        assert!(matches!(self.code, Some(code) if code != 0), "expected a failure: {self:?}");
        assert_eq!(self.stdout, "", "a failure printed to stdout");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {:?}", self.stderr);
        assert!(self.stderr.ends_with('\n'));
        lines[0]
    }
}

/// Runs `mqttctl --server SERVER ARGS...` with `MQTTD_TOKEN` unset, in the
/// directory of the member at SERVER (so with its admin token).
pub async fn mqttctl(server: &str, args: &[&str]) -> Result<Run> {
    mqttctl_with_env(server, args, &[]).await
}

/// Runs `mqttctl --server SERVER ARGS...` with extra environment variables
/// (and no `MQTTD_TOKEN` from the test's own environment), in the
/// directory of the member at SERVER.
pub async fn mqttctl_with_env(server: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Run> {
    let dir = member_dir(server);
    mqttctl_in(dir, server, args, env).await
}

/// Runs `mqttctl --server SERVER ARGS...` in a directory with no
/// `data/admin.token`: only flags and `env` give it a token.
pub async fn mqttctl_elsewhere(server: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Run> {
    let empty = tempfile::tempdir()?;
    mqttctl_in(Some(empty.path().to_owned()), server, args, env).await
}

async fn mqttctl_in(dir: Option<PathBuf>, server: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Run> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mqttctl"));
    command.arg("--server").arg(server).args(args).env_remove("MQTTD_TOKEN");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    run(command).await
}

/// Runs `mqttctl ARGS...` as given (no `--server` added).
pub async fn mqttctl_bare(args: &[&str]) -> Result<Run> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mqttctl"));
    command.args(args).env_remove("MQTTD_TOKEN");
    run(command).await
}

async fn run(mut command: Command) -> Result<Run> {
    // The members run on this test's runtime: wait for the child elsewhere.
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = command.output().context("running mqttctl")?;
        Ok(Run {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout)?,
            stderr: String::from_utf8(output.stderr)?,
            elapsed: started.elapsed(),
        })
    })
    .await?
}

/// Polls `check` until it holds or `PATIENCE` runs out.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
