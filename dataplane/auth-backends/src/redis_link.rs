//! The connection to Redis the `redis` authenticator and authorizer share:
//! a single server, a Redis Cluster, or the master a set of Sentinels
//! names, as EMQX's Redis backends take them (`mode = "single" | "cluster"
//! | "sentinel"`).
//!
//! One pipelined connection (or, for a cluster, one connection per node,
//! routed by key slot) is made on first use and made again after an error;
//! with Sentinel, making it again asks the Sentinels for the master, so a
//! failover is followed. At most `pool_size` commands are in flight.
//! Errors are described without anything the server echoed back (which may
//! hold a key, and so a username).

use std::path::Path;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use serde::Deserialize;
use tokio::sync::{Mutex, Semaphore};

use crate::http::SettingsError;
use crate::stored;

/// How Redis is deployed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    #[default]
    Single,
    Sentinel,
    Cluster,
}

/// `servers` as EMQX writes it (one string, comma-separated) or as a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Servers {
    Text(String),
    List(Vec<String>),
}

impl Servers {
    fn list(&self) -> Vec<String> {
        match self {
            Servers::Text(text) => {
                text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
            }
            Servers::List(list) => list.clone(),
        }
    }
}

/// Where Redis is and who the broker is there.
pub(crate) struct RedisServer<'a> {
    pub mode: Mode,
    /// `mode = "single"`: `host:port`.
    pub server: Option<&'a str>,
    /// `mode = "cluster"`: some of the cluster's nodes; `"sentinel"`: the
    /// Sentinels.
    pub servers: Option<&'a Servers>,
    /// `mode = "sentinel"`: the master's name.
    pub sentinel: Option<&'a str>,
    pub database: i64,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    /// TLS (single server only), the certificate and host name verified
    /// against `ca_file` (or the system's CAs).
    pub tls: bool,
    pub ca_file: Option<&'a Path>,
}

impl RedisServer<'_> {
    /// As logs name it.
    pub fn name(&self) -> String {
        match self.mode {
            Mode::Single => self.server.unwrap_or_default().to_owned(),
            Mode::Cluster => {
                format!("cluster {}", self.servers.map(Servers::list).unwrap_or_default().join(","))
            }
            Mode::Sentinel => format!("sentinel {}", self.sentinel.unwrap_or_default()),
        }
    }
}

#[derive(Clone)]
enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    Sentinel(Arc<Mutex<redis::sentinel::SentinelClient>>),
}

#[derive(Clone)]
enum Link {
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Redis, connected on first use.
#[derive(Clone)]
pub(crate) struct RedisLink {
    target: Target,
    connection: Arc<Mutex<Option<Link>>>,
    /// `pool_size` permits: commands in flight.
    pool: Arc<Semaphore>,
}

impl RedisLink {
    pub fn new(server: &RedisServer<'_>, pool_size: usize) -> Result<RedisLink, SettingsError> {
        let invalid = |key, reason: String| SettingsError::Invalid { key, reason };
        if server.ca_file.is_some() && !server.tls {
            return Err(invalid("ca_file", "is for tls = true".into()));
        }
        let redis_info = redis::RedisConnectionInfo {
            db: server.database,
            username: server.username.map(str::to_owned),
            password: server.password.map(str::to_owned),
            ..Default::default()
        };
        let target = match server.mode {
            Mode::Single => {
                let Some(address) = server.server else {
                    return Err(invalid("server", "is required with mode = \"single\"".into()));
                };
                if server.servers.is_some() || server.sentinel.is_some() {
                    return Err(invalid("servers", "servers and sentinel are for the other modes".into()));
                }
                Target::Single(single(address, redis_info, server.tls, server.ca_file)?)
            }
            Mode::Cluster | Mode::Sentinel => {
                let nodes = server.servers.map(Servers::list).unwrap_or_default();
                if nodes.is_empty() || server.server.is_some() {
                    return Err(invalid("servers", "a list of nodes (and no `server`) in this mode".into()));
                }
                if server.tls {
                    return Err(invalid("tls", "is not supported yet with cluster or sentinel".into()));
                }
                let mut addresses = Vec::with_capacity(nodes.len());
                for node in &nodes {
                    let (host, port) =
                        stored::host_port(node, if server.mode == Mode::Sentinel { 26379 } else { 6379 })?;
                    addresses.push(redis::ConnectionInfo {
                        addr: redis::ConnectionAddr::Tcp(host, port),
                        redis: Default::default(),
                    });
                }
                if server.mode == Mode::Cluster {
                    if server.database != 0 {
                        return Err(invalid("database", "a Redis Cluster has database 0 only".into()));
                    }
                    if server.sentinel.is_some() {
                        return Err(invalid("sentinel", "is for mode = \"sentinel\"".into()));
                    }
                    let mut builder = redis::cluster::ClusterClientBuilder::new(addresses);
                    if let Some(username) = server.username {
                        builder = builder.username(username.to_owned());
                    }
                    if let Some(password) = server.password {
                        builder = builder.password(password.to_owned());
                    }
                    Target::Cluster(builder.build().map_err(|error| invalid("servers", error.to_string()))?)
                } else {
                    let Some(master) = server.sentinel else {
                        return Err(invalid(
                            "sentinel",
                            "the master's name is required with mode = \"sentinel\"".into(),
                        ));
                    };
                    let node = redis::sentinel::SentinelNodeConnectionInfo {
                        tls_mode: None,
                        redis_connection_info: Some(redis_info),
                    };
                    let client = redis::sentinel::SentinelClient::build(
                        addresses,
                        master.to_owned(),
                        Some(node),
                        redis::sentinel::SentinelServerType::Master,
                    )
                    .map_err(|error| invalid("servers", error.to_string()))?;
                    Target::Sentinel(Arc::new(Mutex::new(client)))
                }
            }
        };
        Ok(RedisLink {
            target,
            connection: Arc::new(Mutex::new(None)),
            pool: Arc::new(Semaphore::new(pool_size)),
        })
    }

    async fn connect(&self) -> Result<Link, String> {
        match &self.target {
            Target::Single(client) => client
                .get_multiplexed_async_connection()
                .await
                .map(Link::Multiplexed)
                .map_err(|error| describe(&error)),
            Target::Cluster(client) => {
                client.get_async_connection().await.map(Link::Cluster).map_err(|error| describe(&error))
            }
            Target::Sentinel(client) => {
                let mut client = client.lock().await;
                client.get_async_connection().await.map(Link::Multiplexed).map_err(|error| describe(&error))
            }
        }
    }

    /// Runs `command`; a connection that failed is dropped, to be made
    /// anew by the next command.
    pub async fn query<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, String> {
        let _permit = self.pool.acquire().await.map_err(|_| "the Redis pool is closed".to_owned())?;
        let link = {
            let mut held = self.connection.lock().await;
            match held.as_ref() {
                Some(link) => link.clone(),
                None => {
                    let link = self.connect().await?;
                    *held = Some(link.clone());
                    link
                }
            }
        };
        let reply = match link {
            Link::Multiplexed(mut link) => command.query_async::<T>(&mut link).await,
            Link::Cluster(mut link) => command.query_async::<T>(&mut link).await,
        };
        match reply {
            Ok(value) => Ok(value),
            Err(error) => {
                if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
                    *self.connection.lock().await = None;
                }
                Err(describe(&error))
            }
        }
    }
}

/// A client of one server, over TLS if asked.
fn single(
    address: &str,
    redis_info: redis::RedisConnectionInfo,
    tls: bool,
    ca_file: Option<&Path>,
) -> Result<redis::Client, SettingsError> {
    let invalid = |key, reason: String| SettingsError::Invalid { key, reason };
    let (host, port) = stored::host_port(address, 6379)?;
    let addr = if tls {
        // The redis crate builds its TLS settings with rustls's process-wide
        // provider: ring, as everywhere else in mqttd.
        let _ = rustls::crypto::ring::default_provider().install_default();
        redis::ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None }
    } else {
        redis::ConnectionAddr::Tcp(host, port)
    };
    let info = redis::ConnectionInfo { addr, redis: redis_info };
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|error| invalid("ca_file", format!("{}: {error}", path.display())))?;
            let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
            redis::Client::build_with_tls(info, certificates)
        }
        None => redis::Client::open(info),
    }
    .map_err(|error| invalid("server", error.to_string()))
}

/// A Redis error without anything the server echoed back.
pub(crate) fn describe(error: &redis::RedisError) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connection_refusal() {
        "cannot connect".into()
    } else if error.is_io_error() || error.is_connection_dropped() {
        "connection lost".into()
    } else {
        format!("{:?}", error.kind())
    }
}
