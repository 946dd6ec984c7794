//! The daemon's configuration: TOML file, then `MQTTD__...` environment
//! variables, then `--set key=value`, merged as TOML values and only then
//! deserialized into typed structs, so that every error names its key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use dataplane::DataplaneConfig;
use serde::{Deserialize, Serialize};

/// The whole configuration of `mqttd`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub node: NodeConfig,
    pub log: LogConfig,
    pub controlplane: ControlPlaneSection,
    /// `[dataplane]`: how a data-plane node finds the control plane.
    pub link: LinkSection,
    /// Listeners, MQTT limits, sessions, ...: the data plane's own sections.
    pub dataplane: DataplaneConfig,
}

/// `[controlplane]`: the Raft member of this process, if it runs one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneSection {
    /// gRPC address: admin API, Raft RPCs and the Watch stream.
    pub bind: std::net::SocketAddr,
    /// Make this node the first voter of a new cluster (`mqttd controlplane`;
    /// standalone mode always does when its data directory is empty).
    pub bootstrap: bool,
    /// The member token shared by the control-plane members (Raft); it
    /// also opens the admin API and the data-plane service. Prefer
    /// `token_file`, which keeps the secret off the command line.
    pub token: Option<String>,
    /// A file holding the member token (one trailing newline is trimmed).
    pub token_file: Option<PathBuf>,
    /// The URL other members reach this one on (default: from `bind`).
    pub advertise: Option<String>,
    /// Seconds without a heartbeat before a data-plane node is marked down.
    pub dataplane_down_after: u64,
    /// Seconds a down data-plane node keeps its routes before they are removed.
    pub dataplane_grace_period: u64,
    /// `[controlplane.tls]`: TLS on the gRPC port.
    pub tls: GrpcTlsSection,
}

/// `[controlplane.tls]`: TLS on the gRPC port, like the MQTT TLS listener.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcTlsSection {
    pub enabled: bool,
    /// Server certificate (PEM); members also present it to each other.
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// CA (PEM) of the members' and, with `verify_peer`, clients' certificates.
    pub cacertfile: Option<PathBuf>,
    /// Require a client certificate signed by `cacertfile` (mutual TLS).
    pub verify_peer: bool,
}

/// `[dataplane.tls]`: how a data-plane node verifies the control plane
/// (`https://`), and the client certificate it presents.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkTlsSection {
    /// Reach the members over TLS (`HOST:PORT` means `https://HOST:PORT`).
    pub enabled: bool,
    pub cacertfile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
}

impl Default for ControlPlaneSection {
    fn default() -> Self {
        ControlPlaneSection {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 50051)),
            bootstrap: false,
            token: None,
            token_file: None,
            advertise: None,
            dataplane_down_after: 15,
            dataplane_grace_period: 60,
            tls: GrpcTlsSection::default(),
        }
    }
}

/// `[dataplane]`: the link from a data-plane node to the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkSection {
    /// Control-plane members, comma-separated `HOST:PORT` (or URLs).
    pub controlplane: String,
    /// This node's data-plane token (`mqttctl tokens add --role dataplane
    /// --node-id N`); default: the member token, `controlplane.token`.
    pub token: Option<String>,
    /// A file holding the data-plane token (one trailing newline is trimmed).
    pub token_file: Option<PathBuf>,
    /// Where this node serves its peer link (`mqttd.peer.v1`), the address
    /// other data-plane nodes forward messages to; reported to the control
    /// plane. Served in the `dataplane` role only.
    pub peer_bind: String,
    /// The address other nodes are told to reach the peer link on, when it
    /// is not `peer_bind` (a NAT, a proxy); default: `peer_bind`.
    pub peer_advertise: Option<String>,
    /// Messages held for one other node (unacknowledged or not yet sent)
    /// before new ones are dropped (QoS 0) or refused (QoS 1 and 2);
    /// publishers are slowed from half of it.
    pub peer_queue_messages: usize,
    /// The longest a publisher's PUBACK/PUBCOMP waits for another node that
    /// neither acknowledges nor is declared down, in milliseconds.
    pub peer_ack_timeout_ms: u64,
    /// Seconds between heartbeats to the control plane.
    pub heartbeat_interval: u64,
    /// `[dataplane.tls]`: TLS to the control plane.
    pub tls: LinkTlsSection,
    /// `[dataplane.peer_tls]`: mutual TLS on the peer links.
    pub peer_tls: PeerTlsSection,
}

/// `[dataplane.peer_tls]`: mutual TLS on peer links. Every node serves its
/// certificate and presents it to the others; both sides must come from
/// `cacertfile`. The certificate names the address others reach the node on
/// (`peer_advertise`, else `peer_bind`): an IP address SAN for an IP.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerTlsSection {
    pub enabled: bool,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub cacertfile: Option<PathBuf>,
}

impl Default for LinkSection {
    fn default() -> Self {
        LinkSection {
            controlplane: String::new(),
            token: None,
            token_file: None,
            peer_bind: "127.0.0.1:1884".into(),
            peer_advertise: None,
            peer_queue_messages: 100_000,
            peer_ack_timeout_ms: 30_000,
            heartbeat_interval: 2,
            tls: LinkTlsSection::default(),
            peer_tls: PeerTlsSection::default(),
        }
    }
}

impl LinkSection {
    /// The members as gRPC URLs (`HOST:PORT` is `https://` with TLS on).
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.tls.enabled { "https" } else { "http" };
        self.controlplane
            .split(',')
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(|addr| if addr.contains("://") { addr.to_string() } else { format!("{scheme}://{addr}") })
            .collect()
    }
}

/// Identity and storage of this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub id: u64,
    /// Name used in `$SYS/brokers/{name}/` and in logs.
    pub name: String,
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    /// Threads that run connections and routing; 0: one per core.
    pub worker_threads: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            name: "mqttd@127.0.0.1".into(),
            data_dir: PathBuf::from("./data"),
            worker_threads: 0,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `dataplane=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// The sections that belong to the daemon itself; the rest is the data plane's.
const OWN_SECTIONS: [&str; 4] = ["node", "log", "controlplane", "dataplane"];

/// The default config file, read when present and no `--config` is given.
pub const DEFAULT_FILE: &str = "config/mqttd.toml";

/// Loads the configuration from `file` (or the default file if it exists),
/// the environment and `--set` overrides.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    sets: &[String],
) -> anyhow::Result<Config> {
    let (mut root, source) = match file {
        Some(path) => (read_file(path)?, path.display().to_string()),
        None if Path::new(DEFAULT_FILE).is_file() => {
            (read_file(Path::new(DEFAULT_FILE))?, DEFAULT_FILE.to_string())
        }
        None => (toml::Table::new(), "built-in defaults".to_string()),
    };
    for (name, value) in env {
        if let Some(key) = name.strip_prefix("MQTTD__") {
            let key = key.to_ascii_lowercase().replace("__", ".");
            set_key(&mut root, &key, &value).with_context(|| format!("environment variable {name}"))?;
        }
    }
    for assignment in sets {
        let Some((key, value)) = assignment.split_once('=') else {
            bail!("--set {assignment}: expected key=value");
        };
        set_key(&mut root, key.trim(), value).with_context(|| format!("--set {assignment}"))?;
    }
    from_table(root).with_context(|| format!("invalid configuration (from {source} and overrides)"))
}

fn read_file(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    text.parse::<toml::Table>().with_context(|| format!("config file {} is not valid TOML", path.display()))
}

/// Sets a dotted key, parsing the value as a TOML value when it is one
/// (`true`, `10`, `"x"`) and as a string otherwise (`127.0.0.1:1883`).
fn set_key(root: &mut toml::Table, key: &str, raw: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("{key:?} is not a valid key");
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut table) => table.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let mut table = root;
    for (depth, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(inner) => inner,
            _ => bail!("{} is not a section", parts[..=depth].join(".")),
        };
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn from_table(mut root: toml::Table) -> anyhow::Result<Config> {
    let node = take_section::<NodeConfig>(&mut root, "node")?;
    let log = take_section::<LogConfig>(&mut root, "log")?;
    let mut controlplane = take_section::<ControlPlaneSection>(&mut root, "controlplane")?;
    let mut link = take_section::<LinkSection>(&mut root, "dataplane")?;
    controlplane.token =
        secret("controlplane", controlplane.token.take(), controlplane.token_file.as_deref())?;
    link.token = secret("dataplane", link.token.take(), link.token_file.as_deref())?;
    if controlplane.dataplane_down_after == 0 {
        bail!("controlplane.dataplane_down_after: expected at least 1 second");
    }
    if link.heartbeat_interval == 0 {
        bail!("dataplane.heartbeat_interval: expected at least 1 second");
    }
    if link.peer_queue_messages == 0 {
        bail!("dataplane.peer_queue_messages: expected at least 1");
    }
    if link.peer_ack_timeout_ms == 0 {
        bail!("dataplane.peer_ack_timeout_ms: expected at least 1 millisecond");
    }
    if link.peer_tls.enabled {
        let tls = &link.peer_tls;
        if tls.certfile.is_none() || tls.keyfile.is_none() || tls.cacertfile.is_none() {
            bail!(
                "dataplane.peer_tls.certfile, dataplane.peer_tls.keyfile and dataplane.peer_tls.cacertfile: \
                 all required when dataplane.peer_tls.enabled (peer links use mutual TLS)"
            );
        }
    }
    let dataplane: DataplaneConfig = deserialize(toml::Value::Table(root), None)?;
    dataplane.validate()?;
    if node.name.is_empty() || node.name.contains(['/', '+', '#']) {
        bail!("node.name: expected a non-empty name without '/', '+' or '#'");
    }
    Ok(Config { node, log, controlplane, link, dataplane })
}

/// A `token` key, or the content of its `token_file` (not both), checked:
/// visible ASCII without spaces.
fn secret(section: &str, token: Option<String>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let token = match (token, file) {
        (Some(_), Some(_)) => bail!("{section}.token and {section}.token_file: set one, not both"),
        (None, Some(path)) => Some(
            proto::auth::read_token_file(path)
                .map_err(|error| anyhow::anyhow!("{section}.token_file: {}: {error}", path.display()))?,
        ),
        (token, None) => token,
    };
    if let Some(token) = &token {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("{section}.token: expected visible ASCII characters without spaces");
        }
    }
    Ok(token)
}

fn take_section<T: serde::de::DeserializeOwned + Default>(
    root: &mut toml::Table,
    name: &str,
) -> anyhow::Result<T> {
    debug_assert!(OWN_SECTIONS.contains(&name));
    match root.remove(name) {
        None => Ok(T::default()),
        Some(value) => deserialize(value, Some(name)),
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    section: Option<&str>,
) -> anyhow::Result<T> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let key = match (section, path.as_str()) {
            (Some(section), ".") => section.to_string(),
            (Some(section), path) => format!("{section}.{path}"),
            (None, path) => path.to_string(),
        };
        anyhow::anyhow!("{key}: {}", error.into_inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_sets(sets: &[&str]) -> anyhow::Result<Config> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        from_table_with(toml::Table::new(), &sets)
    }

    fn from_table_with(mut root: toml::Table, sets: &[String]) -> anyhow::Result<Config> {
        for s in sets {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            set_key(&mut root, k, v)?;
        }
        from_table(root)
    }

    #[test]
    fn shipped_file_equals_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE);
        let shipped = from_table(read_file(&path).unwrap()).unwrap();
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn set_overrides_typed_values() {
        let config = load_sets(&[
            "listeners.tcp.bind=127.0.0.1:11883",
            "listeners.ws.enabled=false",
            "node.data_dir=/tmp/x",
            "mqtt.max_inflight=7",
        ])
        .unwrap();
        assert_eq!(config.dataplane.listeners.tcp.bind.to_string(), "127.0.0.1:11883");
        assert!(!config.dataplane.listeners.ws.enabled);
        assert_eq!(config.node.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.dataplane.mqtt.max_inflight, 7);
    }

    #[test]
    fn errors_name_the_key() {
        let error = load_sets(&["listeners.tcp.bnd=1"]).unwrap_err().to_string();
        assert!(error.contains("listeners.tcp") && error.contains("bnd"), "{error}");
        let error = load_sets(&["mqtt.max_inflight=many"]).unwrap_err().to_string();
        assert!(error.contains("mqtt.max_inflight"), "{error}");
        let error = load_sets(&["mqtt.max_qos=3"]).unwrap_err().to_string();
        assert!(error.contains("mqtt.max_qos"), "{error}");
        let error = load_sets(&["log.format=xml"]).unwrap_err().to_string();
        assert!(error.contains("log.format"), "{error}");
        let error = load_sets(&["listeners.tls.enabled=true"]).unwrap_err().to_string();
        assert!(error.contains("listeners.tls"), "{error}");
    }

    #[test]
    fn token_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let set = format!("controlplane.token_file={}", file.display());
        let config = load_sets(&[&set, &format!("dataplane.token_file={}", file.display())]).unwrap();
        assert_eq!(config.controlplane.token.as_deref(), Some("s3cret"));
        assert_eq!(config.link.token.as_deref(), Some("s3cret"));
        let error = load_sets(&[&set, "controlplane.token=x"]).unwrap_err().to_string();
        assert!(error.contains("not both"), "{error}");
        let missing = format!("dataplane.token_file={}", dir.path().join("missing").display());
        let error = load_sets(&[&missing]).unwrap_err().to_string();
        assert!(error.contains("dataplane.token_file"), "{error}");
        std::fs::write(&file, "two words\n").unwrap();
        assert!(load_sets(&[&set]).unwrap_err().to_string().contains("controlplane.token_file"));
    }

    #[test]
    fn environment_overrides_use_double_underscores() {
        let env = vec![("MQTTD__LISTENERS__TCP__BIND".to_string(), "127.0.0.1:2883".to_string())];
        let config = load(Some(Path::new("/nonexistent/x.toml")), env.clone(), &[]);
        assert!(config.unwrap_err().to_string().contains("/nonexistent/x.toml"));
        let mut root = toml::Table::new();
        set_key(&mut root, "listeners.tcp.bind", "127.0.0.1:2883").unwrap();
        assert_eq!(from_table(root).unwrap().dataplane.listeners.tcp.bind.port(), 2883);
    }
}
