//! The data plane's configuration: raw serde structs with their defaults.
//!
//! Every struct denies unknown fields so that a typo in a key is an error
//! that names the key, never a silently ignored setting. Defaults live here
//! and only here; `config/mqttd.toml` spells the same values out for users,
//! and a test keeps the two equal. [`DataplaneConfig::validate`] checks the
//! values that serde cannot.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything a data-plane node needs to serve clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneConfig {
    pub listeners: ListenersConfig,
    pub mqtt: MqttConfig,
    pub session: SessionConfig,
    pub retainer: RetainerConfig,
    pub shared_subscription: SharedSubscriptionConfig,
    pub sys: SysConfig,
    pub auth: AuthConfig,
}

/// The client-facing listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    pub tcp: TcpListenerConfig,
    pub tls: TlsListenerConfig,
    pub ws: WsListenerConfig,
    pub wss: WssListenerConfig,
}

fn addr(text: &str) -> SocketAddr {
    // Only called on the literals below.
    text.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// An IP address or CIDR network.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Default cap on one listener's connections.
const DEFAULT_MAX_CONNECTIONS: usize = 1_000_000;

impl ListenersConfig {
    /// `proxy_protocol_from` of the listener named `name`.
    pub fn proxy_protocol_from(&self, name: &str) -> &[String] {
        match name {
            "tcp" => &self.tcp.proxy_protocol_from,
            "tls" => &self.tls.proxy_protocol_from,
            "ws" => &self.ws.proxy_protocol_from,
            _ => &self.wss.proxy_protocol_from,
        }
    }

    /// `proxy_protocol` of the listener named `name`.
    pub fn proxy_protocol(&self, name: &str) -> bool {
        match name {
            "tcp" => self.tcp.proxy_protocol,
            "tls" => self.tls.proxy_protocol,
            "ws" => self.ws.proxy_protocol,
            _ => self.wss.proxy_protocol,
        }
    }

    /// The authenticator chain of listener `index` (0 `tcp`, 1 `tls`, 2
    /// `ws`, 3 `wss`), if it has one of its own.
    pub fn authenticators(&self, index: u8) -> Option<&[AuthenticatorConfig]> {
        match index {
            0 => self.tcp.authenticators.as_deref(),
            1 => self.tls.authenticators.as_deref(),
            2 => self.ws.authenticators.as_deref(),
            3 => self.wss.authenticators.as_deref(),
            _ => None,
        }
    }

    /// `max_connections` of the listener named `name` (`tcp`, `tls`, `ws`, `wss`).
    pub fn max_connections(&self, name: &str) -> usize {
        match name {
            "tcp" => self.tcp.max_connections,
            "tls" => self.tls.max_connections,
            "ws" => self.ws.max_connections,
            _ => self.wss.max_connections,
        }
    }
}

/// Plain MQTT over TCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpListenerConfig {
    pub enabled: bool,
    pub bind: SocketAddr,
    /// Most connections this listener holds at once (more are closed
    /// as they are accepted); 0 means no limit.
    pub max_connections: usize,
    /// Every connection starts with a PROXY protocol header (v1 or v2)
    /// giving the client's real address; one without is closed.
    pub proxy_protocol: bool,
    /// Addresses or networks (CIDR) the PROXY header is taken from (the
    /// load balancers); a connection from elsewhere is closed. Empty: any.
    pub proxy_protocol_from: Vec<String>,
    /// This listener's own authenticator chain (`[[listeners.<name>.authenticators]]`,
    /// as `[[auth.authenticators]]`), tried instead of `auth.authenticators`;
    /// absent: the global chain.
    pub authenticators: Option<Vec<AuthenticatorConfig>>,
}

impl Default for TcpListenerConfig {
    fn default() -> Self {
        TcpListenerConfig {
            enabled: true,
            bind: addr("0.0.0.0:1883"),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
            authenticators: None,
        }
    }
}

/// MQTT over TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsListenerConfig {
    pub enabled: bool,
    pub bind: SocketAddr,
    /// Most connections this listener holds at once (more are closed
    /// as they are accepted); 0 means no limit.
    pub max_connections: usize,
    /// Every connection starts with a PROXY protocol header (v1 or v2)
    /// giving the client's real address; one without is closed.
    pub proxy_protocol: bool,
    /// Addresses or networks (CIDR) the PROXY header is taken from (the
    /// load balancers); a connection from elsewhere is closed. Empty: any.
    pub proxy_protocol_from: Vec<String>,
    /// This listener's own authenticator chain (`[[listeners.<name>.authenticators]]`,
    /// as `[[auth.authenticators]]`), tried instead of `auth.authenticators`;
    /// absent: the global chain.
    pub authenticators: Option<Vec<AuthenticatorConfig>>,
    /// PEM certificate chain of the server.
    pub certfile: Option<PathBuf>,
    /// PEM private key of the server.
    pub keyfile: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to.
    pub cacertfile: Option<PathBuf>,
    /// Require and verify a client certificate.
    pub verify_peer: bool,
}

impl Default for TlsListenerConfig {
    fn default() -> Self {
        TlsListenerConfig {
            enabled: false,
            bind: addr("0.0.0.0:8883"),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
            authenticators: None,
            certfile: None,
            keyfile: None,
            cacertfile: None,
            verify_peer: false,
        }
    }
}

/// MQTT over WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsListenerConfig {
    pub enabled: bool,
    pub bind: SocketAddr,
    /// Most connections this listener holds at once (more are closed
    /// as they are accepted); 0 means no limit.
    pub max_connections: usize,
    /// Every connection starts with a PROXY protocol header (v1 or v2)
    /// giving the client's real address; one without is closed.
    pub proxy_protocol: bool,
    /// Addresses or networks (CIDR) the PROXY header is taken from (the
    /// load balancers); a connection from elsewhere is closed. Empty: any.
    pub proxy_protocol_from: Vec<String>,
    /// This listener's own authenticator chain (`[[listeners.<name>.authenticators]]`,
    /// as `[[auth.authenticators]]`), tried instead of `auth.authenticators`;
    /// absent: the global chain.
    pub authenticators: Option<Vec<AuthenticatorConfig>>,
    /// The HTTP path of the MQTT endpoint.
    pub path: String,
    /// Origins a browser page may connect from (the `Origin` header, e.g.
    /// `https://app.example.com`); empty: any origin, and none.
    pub allowed_origins: Vec<String>,
}

impl Default for WsListenerConfig {
    fn default() -> Self {
        WsListenerConfig {
            enabled: true,
            bind: addr("0.0.0.0:8083"),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
            authenticators: None,
            path: "/mqtt".into(),
            allowed_origins: Vec::new(),
        }
    }
}

/// MQTT over WebSocket over TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WssListenerConfig {
    pub enabled: bool,
    pub bind: SocketAddr,
    /// Most connections this listener holds at once (more are closed
    /// as they are accepted); 0 means no limit.
    pub max_connections: usize,
    /// Every connection starts with a PROXY protocol header (v1 or v2)
    /// giving the client's real address; one without is closed.
    pub proxy_protocol: bool,
    /// Addresses or networks (CIDR) the PROXY header is taken from (the
    /// load balancers); a connection from elsewhere is closed. Empty: any.
    pub proxy_protocol_from: Vec<String>,
    /// This listener's own authenticator chain (`[[listeners.<name>.authenticators]]`,
    /// as `[[auth.authenticators]]`), tried instead of `auth.authenticators`;
    /// absent: the global chain.
    pub authenticators: Option<Vec<AuthenticatorConfig>>,
    pub path: String,
    /// As `listeners.ws.allowed_origins`.
    pub allowed_origins: Vec<String>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub cacertfile: Option<PathBuf>,
    pub verify_peer: bool,
}

impl Default for WssListenerConfig {
    fn default() -> Self {
        WssListenerConfig {
            enabled: false,
            bind: addr("0.0.0.0:8084"),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
            authenticators: None,
            path: "/mqtt".into(),
            allowed_origins: Vec::new(),
            certfile: None,
            keyfile: None,
            cacertfile: None,
            verify_peer: false,
        }
    }
}

/// Certificate files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub cacertfile: Option<PathBuf>,
    pub verify_peer: bool,
}

impl TlsListenerConfig {
    /// The certificate files of this listener.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            certfile: self.certfile.clone(),
            keyfile: self.keyfile.clone(),
            cacertfile: self.cacertfile.clone(),
            verify_peer: self.verify_peer,
        }
    }
}

impl WssListenerConfig {
    /// The certificate files of this listener.
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            certfile: self.certfile.clone(),
            keyfile: self.keyfile.clone(),
            cacertfile: self.cacertfile.clone(),
            verify_peer: self.verify_peer,
        }
    }
}

/// Protocol limits, announced to clients in CONNACK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Largest packet accepted from or sent to a client, in bytes.
    pub max_packet_size: u32,
    /// Longest client identifier accepted.
    pub max_clientid_len: usize,
    /// Largest keep-alive a client may ask for, in seconds; a v5 client
    /// asking for more (or for 0) is told this value as Server Keep Alive.
    /// 0 means no limit.
    pub max_keep_alive: u16,
    /// QoS 1 and 2 publishes a client may have unacknowledged towards us
    /// (Receive Maximum in CONNACK).
    pub receive_maximum: u16,
    /// QoS 1 and 2 publishes we keep unacknowledged towards one client,
    /// also bounded by the client's own Receive Maximum.
    pub max_inflight: u16,
    /// Topic aliases a client may use towards us.
    pub topic_alias_maximum: u16,
    /// Highest QoS granted (0, 1 or 2).
    pub max_qos: u8,
    pub retain_available: bool,
    pub wildcard_subscription_available: bool,
    pub shared_subscription_available: bool,
    pub subscription_identifiers_available: bool,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout: u64,
    /// Let idle plain-TCP connections hibernate: give up their task and
    /// their reactor registration, and wake on input, a delivery or a
    /// deadline (see `hibernate.rs`).
    pub hibernate: bool,
    /// Milliseconds a connection stays idle before it hibernates. A
    /// connection that has done nothing since its CONNACK hibernates at once.
    pub hibernate_after_ms: u64,
    /// Milliseconds a write to a client may block (it stopped reading)
    /// before the client is disconnected.
    pub write_timeout_ms: u64,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Longest topic filter accepted in SUBSCRIBE, in bytes.
    pub max_filter_length: usize,
    /// Most subscriptions one session holds; 0 means no limit.
    pub max_subscriptions: usize,
    /// Bytes of topic names one client may hold in its incoming topic
    /// aliases; past that it is disconnected with 0x97 (quota exceeded).
    pub max_topic_alias_bytes: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_size: 1024 * 1024,
            max_clientid_len: 65535,
            max_keep_alive: 0,
            receive_maximum: 32,
            max_inflight: 32,
            topic_alias_maximum: 65535,
            max_qos: 2,
            retain_available: true,
            wildcard_subscription_available: true,
            shared_subscription_available: true,
            subscription_identifiers_available: true,
            connect_timeout: 10,
            hibernate: true,
            hibernate_after_ms: 2000,
            write_timeout_ms: 15_000,
            max_topic_levels: 128,
            max_filter_length: 4096,
            max_subscriptions: 10_000,
            max_topic_alias_bytes: 65_536,
        }
    }
}

/// What to do with a new message for a client whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFullPolicy {
    /// Drop the oldest queued message (a QoS 0 one first if there is one).
    DropOldest,
    /// Drop the new message.
    DropNew,
}

/// Session persistence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Upper bound on any session's expiry, in seconds (MQTT 3.1.1 persistent
    /// sessions get exactly this). 0 means sessions never outlive the
    /// connection; 4294967295 means a 3.1.1 session never expires.
    pub max_expiry_interval: u32,
    /// Messages queued per client, offline or not yet sent.
    pub max_queued_messages: usize,
    pub queue_full_policy: QueueFullPolicy,
    /// Queue QoS 0 messages for offline clients too.
    pub queue_qos0: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_expiry_interval: 7200,
            max_queued_messages: 1000,
            queue_full_policy: QueueFullPolicy::DropOldest,
            queue_qos0: true,
        }
    }
}

/// The retained message store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetainerConfig {
    /// Most retained messages kept; 0 means no limit.
    pub max_retained_messages: usize,
    /// Largest retained payload, in bytes; 0 means no limit.
    pub max_payload_size: usize,
}

impl Default for RetainerConfig {
    fn default() -> Self {
        RetainerConfig { max_retained_messages: 1_000_000, max_payload_size: 1024 * 1024 }
    }
}

/// How a shared-subscription group picks the member for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareStrategy {
    Random,
    RoundRobin,
    Sticky,
    HashClientid,
    HashTopic,
}

/// Shared subscriptions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedSubscriptionConfig {
    pub strategy: ShareStrategy,
}

impl Default for SharedSubscriptionConfig {
    fn default() -> Self {
        SharedSubscriptionConfig { strategy: ShareStrategy::RoundRobin }
    }
}

/// `$SYS` topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysConfig {
    /// Seconds between two publications; 0 turns `$SYS` off.
    pub interval: u64,
    /// Publish `$SYS/brokers/{node}/clients/{client id}/connected` and
    /// `/disconnected` as clients come and go (as EMQX does).
    pub presence: bool,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig { interval: 10, presence: true }
    }
}

/// Who may connect without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousPolicy {
    /// Anonymous clients from loopback addresses only, and only while no user
    /// is defined (the default, as in Mosquitto 2: open locally until auth is
    /// configured).
    Loopback,
    /// Anyone.
    Allow,
    /// No one.
    Deny,
}

/// What happens when no ACL rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclNoMatch {
    Allow,
    Deny,
}

/// What a client that is refused a publish or a subscription meets, past
/// the refusal itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyAction {
    /// Nothing more (PUBACK/PUBREC/SUBACK 0x87; a QoS 0 publish dropped).
    Ignore,
    /// The connection is closed (5.0: DISCONNECT 0x87 first), as EMQX's
    /// `authorization.deny_action = disconnect`.
    Disconnect,
}

/// Client authentication and authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub allow_anonymous: AnonymousPolicy,
    /// The decision when no ACL rule matches a publish or subscribe.
    pub acl_no_match: AclNoMatch,
    /// What a refused publish or subscription does to the connection.
    pub deny_action: DenyAction,
    /// Threads that check passwords (argon2id); 0: half the cores, at least one.
    pub password_check_threads: usize,
    /// Password checks that may wait for a thread; past that, CONNECT is
    /// refused at once with 0x89 (server busy).
    pub password_check_queue: usize,
    /// Password checks one username may have waiting or running; a flood
    /// for one account is refused fast and leaves room for the others.
    pub password_checks_per_username: u32,
    /// Password checks one client address may have waiting or running: a
    /// flood of made-up usernames from one address is refused fast too.
    pub password_checks_per_address: u32,
    /// Successful password checks remembered (as keyed hashes, never the
    /// password; see `cluster/recent_checks.rs`) so that a reconnect storm
    /// costs no argon2 check per client; 0 turns this off.
    pub password_cache_entries: usize,
    /// How long a successful check is remembered, in seconds.
    pub password_cache_ttl_s: u64,
    /// Failed logins from one address within `failed_login_window_s` that
    /// ban it for `failed_login_ban_s` (on this node); 0 turns this off.
    pub failed_login_limit: u32,
    pub failed_login_window_s: u64,
    pub failed_login_ban_s: u64,
    /// The authenticator chain, tried in order (`[[auth.authenticators]]`);
    /// empty: the built-in users alone.
    pub authenticators: Vec<AuthenticatorConfig>,
    /// The authorizer chain, tried in order (`[[auth.authorizers]]`);
    /// empty: the built-in ACL rules alone.
    pub authorizers: Vec<AuthorizerConfig>,
}

/// One entry of `[[auth.authenticators]]`, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AuthenticatorConfig {
    /// Users from the control plane (and the anonymous policy).
    Builtin,
    /// Built by the `auth-backends` crate, which reads (and checks) the
    /// rest of the entry.
    Postgresql(toml::Table),
    Mysql(toml::Table),
    Redis(toml::Table),
    Ldap(toml::Table),
    Http(toml::Table),
    Jwt(toml::Table),
    /// The verified client certificate's name as the username.
    X509(X509Config),
}

/// `type = "x509"`: which name of the client certificate becomes the
/// username.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509Config {
    #[serde(default = "default_cert_name")]
    pub username: CertName,
    /// A name of the certificate that becomes the client id too (as EMQX's
    /// `peer_cert_as_clientid`); absent: the CONNECT's client id stays.
    #[serde(default)]
    pub clientid: Option<CertName>,
}

/// A name in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertName {
    /// The subject's common name.
    Cn,
    /// The first DNS name among the subject alternative names.
    SanDns,
    /// The first e-mail address among the subject alternative names.
    SanEmail,
}

fn default_cert_name() -> CertName {
    CertName::Cn
}

/// One entry of `[[auth.authorizers]]`, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AuthorizerConfig {
    /// ACL rules from the control plane.
    Builtin,
    /// An ACL file in the format of Mosquitto's `acl_file`.
    File(AclFileConfig),
    /// Built by the `auth-backends` crate (see [`AuthenticatorConfig`]).
    Postgresql(toml::Table),
    Mysql(toml::Table),
    Redis(toml::Table),
    Http(toml::Table),
}

/// `type = "file"`: an ACL file, read at start and again whenever it
/// changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclFileConfig {
    pub path: PathBuf,
    /// How often the file is looked at for a change, in milliseconds.
    #[serde(default = "default_acl_file_reload_ms")]
    pub reload_interval_ms: u64,
}

fn default_acl_file_reload_ms() -> u64 {
    2000
}

impl AuthenticatorConfig {
    /// The `type` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthenticatorConfig::Builtin => "builtin",
            AuthenticatorConfig::Postgresql(_) => "postgresql",
            AuthenticatorConfig::Mysql(_) => "mysql",
            AuthenticatorConfig::Redis(_) => "redis",
            AuthenticatorConfig::Ldap(_) => "ldap",
            AuthenticatorConfig::Http(_) => "http",
            AuthenticatorConfig::Jwt(_) => "jwt",
            AuthenticatorConfig::X509(_) => "x509",
        }
    }
}

impl AuthorizerConfig {
    /// The `type` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthorizerConfig::Builtin => "builtin",
            AuthorizerConfig::File(_) => "file",
            AuthorizerConfig::Postgresql(_) => "postgresql",
            AuthorizerConfig::Mysql(_) => "mysql",
            AuthorizerConfig::Redis(_) => "redis",
            AuthorizerConfig::Http(_) => "http",
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: AnonymousPolicy::Loopback,
            acl_no_match: AclNoMatch::Allow,
            deny_action: DenyAction::Ignore,
            password_check_threads: 0,
            password_check_queue: 64,
            password_checks_per_username: 4,
            password_checks_per_address: 8,
            password_cache_entries: 100_000,
            password_cache_ttl_s: 3600,
            failed_login_limit: 0,
            failed_login_window_s: 60,
            failed_login_ban_s: 300,
            authenticators: Vec::new(),
            authorizers: Vec::new(),
        }
    }
}

/// A value that is well-typed but not acceptable.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

impl DataplaneConfig {
    /// Checks the values that serde cannot.
    /// The chains name only what this build has, with sane settings.
    fn validate_auth_chains(&self) -> Result<(), ConfigError> {
        // Every type of both chains is built (`http`, `jwt`, `ldap`, `mysql`,
        // `postgresql` and `redis` by the `auth-backends` crate, which
        // checks their settings when the chain is loaded).
        for (position, entry) in self.auth.authorizers.iter().enumerate() {
            match entry {
                AuthorizerConfig::Builtin => {}
                AuthorizerConfig::File(file) => {
                    if file.reload_interval_ms == 0 {
                        return Err(ConfigError {
                            key: "auth.authorizers",
                            message: format!("entry {}: reload_interval_ms must be at least 1", position + 1),
                        });
                    }
                }
                // `http`, `mysql`, `postgresql` and `redis` are built by the
                // `auth-backends` crate.
                AuthorizerConfig::Postgresql(_)
                | AuthorizerConfig::Mysql(_)
                | AuthorizerConfig::Redis(_)
                | AuthorizerConfig::Http(_) => {}
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, message: &str| Err(ConfigError { key, message: message.to_string() });
        if self.mqtt.max_qos > 2 {
            return err("mqtt.max_qos", "expected 0, 1 or 2");
        }
        if self.mqtt.receive_maximum == 0 {
            return err("mqtt.receive_maximum", "expected 1 to 65535");
        }
        if self.mqtt.max_inflight == 0 {
            return err("mqtt.max_inflight", "expected 1 to 65535");
        }
        if self.mqtt.max_packet_size < 64
            || self.mqtt.max_packet_size as usize > mqtt_codec::MAX_REMAINING_LENGTH
        {
            return err("mqtt.max_packet_size", "expected 64 to 268435455");
        }
        if self.session.max_queued_messages == 0 {
            return err("session.max_queued_messages", "expected at least 1");
        }
        for (key, list) in [
            ("listeners.tcp.proxy_protocol_from", &self.listeners.tcp.proxy_protocol_from),
            ("listeners.tls.proxy_protocol_from", &self.listeners.tls.proxy_protocol_from),
            ("listeners.ws.proxy_protocol_from", &self.listeners.ws.proxy_protocol_from),
            ("listeners.wss.proxy_protocol_from", &self.listeners.wss.proxy_protocol_from),
        ] {
            if let Some(bad) = list.iter().find(|text| parse_network(text).is_none()) {
                return Err(ConfigError {
                    key,
                    message: format!("{bad:?} is not an IP address or CIDR network"),
                });
            }
        }
        self.validate_auth_chains()?;
        if self.mqtt.write_timeout_ms == 0 {
            return err("mqtt.write_timeout_ms", "expected at least 1 millisecond");
        }
        if self.mqtt.max_topic_levels == 0 {
            return err("mqtt.max_topic_levels", "expected at least 1");
        }
        if self.mqtt.max_filter_length == 0 {
            return err("mqtt.max_filter_length", "expected at least 1");
        }
        if self.mqtt.connect_timeout == 0 {
            return err("mqtt.connect_timeout", "expected at least 1 second");
        }
        for (key, enabled, files) in [
            ("listeners.tls", self.listeners.tls.enabled, &self.listeners.tls.files()),
            ("listeners.wss", self.listeners.wss.enabled, &self.listeners.wss.files()),
        ] {
            if enabled && (files.certfile.is_none() || files.keyfile.is_none()) {
                return Err(ConfigError {
                    key,
                    message: "an enabled TLS listener needs certfile and keyfile".into(),
                });
            }
            if enabled && files.verify_peer && files.cacertfile.is_none() {
                return Err(ConfigError { key, message: "verify_peer needs cacertfile".into() });
            }
        }
        for (key, path) in
            [("listeners.ws.path", &self.listeners.ws.path), ("listeners.wss.path", &self.listeners.wss.path)]
        {
            if !path.starts_with('/') {
                return err(key, "expected a path starting with /");
            }
        }
        Ok(())
    }
}
