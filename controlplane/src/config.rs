//! `ControlPlaneConfig`: what one control-plane node needs to start.
//!
//! Defaults live here only ([`ControlPlaneConfig::new`]); [`validate`] checks
//! what the types cannot, once, before anything binds or opens a file. The
//! daemon maps its `[node]` and `[controlplane]` keys onto this struct.
//!
//! [`validate`]: ControlPlaneConfig::validate

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::NodeId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlaneConfig {
    /// This member's Raft id, unique in the cluster and stable across restarts.
    pub node_id: NodeId,
    /// Where the store (`controlplane.redb`, `controlplane-snapshot.bin`) lives; created if missing.
    pub data_dir: PathBuf,
    /// The gRPC port that serves Raft, the Watch stream and the admin API.
    pub bind: SocketAddr,
    /// The URL other members use to reach this one (e.g.
    /// `http://10.0.0.1:50051`). Default: `http://` + the bound address, with
    /// an unspecified IP (`0.0.0.0`, `::`) replaced by loopback.
    pub advertise_addr: Option<String>,
    /// Start a new single-voter cluster if the store is empty. Ignored when
    /// the store already holds a cluster (a restart rejoins on its own).
    pub bootstrap: bool,
    /// When set, every RPC in and out carries `authorization: Bearer TOKEN`;
    /// calls without it are refused with `Unauthenticated`.
    pub token: Option<String>,
    /// How often the leader sends Raft heartbeats.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in this range
    /// starts an election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// A data-plane node with no heartbeat for this long is marked down.
    pub dataplane_down_after: Duration,
    /// A data-plane node down for this long loses its routes and
    /// shared-subscription memberships.
    pub dataplane_grace_period: Duration,
    /// Build a snapshot (and compact the log) every this many entries.
    pub snapshot_every: u64,
    /// TLS on the gRPC port (and to other members at `https://` URLs).
    pub tls: Option<GrpcTls>,
}

/// TLS of the gRPC port, as files (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcTls {
    /// The server certificate (chain); members present it as their client
    /// certificate to each other too.
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    /// The CA that signed the members' (and, with `verify_peer`, every
    /// client's) certificates.
    pub cacertfile: Option<PathBuf>,
    /// Require a client certificate signed by `cacertfile` on every
    /// connection (mutual TLS): members, data-plane nodes and `mqttctl`.
    pub verify_peer: bool,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("controlplane: {key} {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

impl ControlPlaneConfig {
    /// A configuration with the default timings: Raft heartbeat 250 ms,
    /// election timeout 1–2 s, data-plane nodes down after 15 s without a
    /// heartbeat and removed 60 s later, a snapshot every 1000 entries.
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>, bind: SocketAddr) -> Self {
        ControlPlaneConfig {
            node_id,
            data_dir: data_dir.into(),
            bind,
            advertise_addr: None,
            bootstrap: false,
            token: None,
            heartbeat_interval: Duration::from_millis(250),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            dataplane_down_after: Duration::from_secs(15),
            dataplane_grace_period: Duration::from_secs(60),
            snapshot_every: 1000,
            tls: None,
        }
    }

    /// Checks the values that the types allow but Raft or gRPC cannot use.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval.is_zero() {
            return Err(invalid("heartbeat_interval", "must be above zero"));
        }
        if self.election_timeout_min <= self.heartbeat_interval {
            return Err(invalid("election_timeout_min", "must be longer than heartbeat_interval"));
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return Err(invalid("election_timeout_max", "must be longer than election_timeout_min"));
        }
        if self.dataplane_down_after.is_zero() {
            return Err(invalid("dataplane_down_after", "must be above zero"));
        }
        if self.snapshot_every == 0 {
            return Err(invalid("snapshot_every", "must be at least 1"));
        }
        if let Some(token) = &self.token {
            if token.is_empty() || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(invalid("token", "must be non-empty visible ASCII (no spaces)"));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.verify_peer && tls.cacertfile.is_none() {
                return Err(invalid("tls.cacertfile", "is required with tls.verify_peer"));
            }
        }
        if let Some(addr) = &self.advertise_addr {
            if !(addr.starts_with("http://") || addr.starts_with("https://")) {
                return Err(invalid(
                    "advertise_addr",
                    format!("{addr:?} must be a URL like http://HOST:PORT"),
                ));
            }
        }
        Ok(())
    }
}

/// Turns `HOST:PORT` into `http://HOST:PORT`; leaves URLs as they are.
pub fn normalize_endpoint(addr: &str) -> String {
    let trimmed = addr.trim().trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ControlPlaneConfig {
        ControlPlaneConfig::new(1, "/tmp/x", "127.0.0.1:0".parse().expect("address"))
    }

    #[test]
    fn defaults_are_valid() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut bad = config();
        bad.election_timeout_min = bad.heartbeat_interval;
        assert!(bad.validate().unwrap_err().to_string().contains("election_timeout_min"));
        let mut bad = config();
        bad.token = Some("has space".into());
        assert!(bad.validate().unwrap_err().to_string().contains("token"));
        let mut bad = config();
        bad.advertise_addr = Some("10.0.0.1:50051".into());
        assert!(bad.validate().unwrap_err().to_string().contains("advertise_addr"));
    }

    #[test]
    fn endpoints() {
        assert_eq!(normalize_endpoint("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(normalize_endpoint("http://h:1/"), "http://h:1");
    }
}
