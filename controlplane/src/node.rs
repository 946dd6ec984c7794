//! `ControlPlane::start`: opens the store, binds the gRPC port, starts Raft
//! and the background tasks, and returns the [`ControlPlaneHandle`].
//!
//! Start-up: a node whose store is empty waits to be joined, unless
//! `bootstrap` is set, which makes it the single voter of a new cluster. A
//! node with data rejoins on its own: its log and vote say who its peers
//! are. In-process use (standalone mode) goes over loopback gRPC to
//! [`ControlPlaneHandle::endpoint`] with [`ControlPlaneHandle::dataplane_token`]
//! (a credential made at start, held in memory only), the same path a
//! remote data-plane node takes, so the single-node path is the cluster
//! path. At its first start a node writes its admin token to
//! `data_dir/admin.token` (see `credentials.rs`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, SnapshotPolicy};
use proto::auth::BearerToken;
use proto::tls::{read_pem, ClientTls};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::applied::SharedState;
use crate::batcher::Batcher;
use crate::config::{normalize_endpoint, ConfigError, ControlPlaneConfig};
use crate::credentials::{self, CredentialError};
use crate::grpc::{AdminService, ControlPlaneService, Credentials, RaftService};
use crate::housekeeping::Housekeeping;
use crate::network::{NetworkFactory, Peers};
use crate::state::ControlState;
use crate::status::NodeStatus;
use crate::store::{self, StoreError, StoreWatch};
use crate::writer::Writer;
use crate::{NodeId, Raft};

/// How long shutdown waits for open calls to finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("controlplane.tls: {0}")]
    Tls(#[from] proto::tls::TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot bind the control-plane gRPC port {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start Raft: {0}")]
    Raft(String),
    #[error("cannot bootstrap the cluster: {0}")]
    Bootstrap(String),
}

/// Why a shutdown was not clean (the node is stopped all the same).
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("Raft did not stop cleanly: {0}")]
    Raft(String),
    #[error("the gRPC server failed: {0}")]
    Server(String),
    #[error("the store is still open after {0:?}; a restart on this data directory may fail")]
    StoreStillOpen(Duration),
}

/// The entry point; see [`ControlPlane::start`].
pub struct ControlPlane;

impl ControlPlane {
    /// Starts one control-plane member and serves until
    /// [`ControlPlaneHandle::shutdown`]. Fails before binding anything if the
    /// configuration is invalid, and before starting Raft if the port or the
    /// store cannot be opened.
    pub async fn start(config: ControlPlaneConfig) -> Result<ControlPlaneHandle, StartError> {
        config.validate()?;
        credentials::ensure_private_dir(&config.data_dir)?;
        let admin_token = credentials::load_or_create_admin_token(&config.data_dir)?;
        let dataplane_token = credentials::generate_token();
        let shared = SharedState::new();
        let (log_store, state_machine, store_watch) = store::open(&config.data_dir, shared.clone())?;
        let (server_tls, client_tls) = tls_configs(config.tls.as_ref())?;
        let scheme = if server_tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let advertise_addr = match &config.advertise_addr {
            Some(addr) => normalize_endpoint(addr),
            None => loopback_endpoint(scheme, local_addr),
        };

        let raft_config = openraft::Config {
            cluster_name: "mqttd-controlplane".to_owned(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout_min.as_millis() as u64,
            election_timeout_max: config.election_timeout_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.snapshot_every.min(1000),
            ..Default::default()
        }
        .validate()
        .map_err(|error| StartError::Raft(error.to_string()))?;
        let token = BearerToken::new(config.token.as_deref()).map_err(|error| {
            StartError::Config(ConfigError::Invalid { key: "token", reason: error.to_string() })
        })?;
        let peers = Peers::new(token, client_tls);
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory::new(peers.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|error| StartError::Raft(error.to_string()))?;

        let initialized = raft.is_initialized().await.map_err(|error| StartError::Raft(error.to_string()))?;
        if config.bootstrap && !initialized {
            tracing::info!(node_id = config.node_id, %advertise_addr, "bootstrapping a new single-voter cluster");
            let members = BTreeMap::from([(config.node_id, BasicNode::new(&advertise_addr))]);
            raft.initialize(members).await.map_err(|error| StartError::Bootstrap(error.to_string()))?;
        } else if !initialized {
            tracing::info!(node_id = config.node_id, %advertise_addr, "empty store: waiting to be joined");
        } else {
            tracing::info!(node_id = config.node_id, %advertise_addr, "rejoining from the data directory");
        }

        let (shutdown, shutdown_signal) = watch::channel(false);
        let writer = Writer::new(raft.clone(), peers.clone());
        let (batcher, batcher_task) = Batcher::spawn(writer.clone(), shutdown_signal.clone());
        let housekeeping = Housekeeping {
            node_id: config.node_id,
            raft: raft.clone(),
            shared: shared.clone(),
            writer: writer.clone(),
            down_after: config.dataplane_down_after,
            grace_period: config.dataplane_grace_period,
        };
        let housekeeping_task = tokio::spawn(housekeeping.run(shutdown_signal.clone()));
        let server = tokio::spawn(crate::grpc::serve(
            listener,
            RaftService::new(raft.clone(), writer.clone()),
            ControlPlaneService::new(shared.clone(), batcher, shutdown_signal.clone()),
            AdminService::new(advertise_addr.clone(), raft.clone(), shared.clone(), writer, peers),
            Arc::new(Credentials::new(
                config.token.clone(),
                admin_token.clone(),
                dataplane_token.clone(),
                config.node_id,
                shared.clone(),
            )),
            server_tls,
            shutdown_signal,
        ));
        tracing::info!(node_id = config.node_id, %local_addr, "control plane serving gRPC");
        Ok(ControlPlaneHandle {
            node_id: config.node_id,
            local_addr,
            scheme,
            advertise_addr,
            token: config.token,
            admin_token,
            dataplane_token,
            raft,
            shared,
            shutdown,
            server: Some(server),
            tasks: vec![batcher_task, housekeeping_task],
            store_watch: Some(store_watch),
        })
    }
}

/// The server's TLS settings, and the client side members use on each
/// other (the CA, and their own certificate as client certificate).
fn tls_configs(
    tls: Option<&crate::config::GrpcTls>,
) -> Result<(Option<ServerTlsConfig>, ClientTls), proto::tls::TlsError> {
    let Some(tls) = tls else { return Ok((None, ClientTls::none())) };
    proto::tls::install_crypto_provider();
    let cert = read_pem(&tls.certfile)?;
    let key = read_pem(&tls.keyfile)?;
    let mut server = ServerTlsConfig::new().identity(Identity::from_pem(&cert, &key));
    let client = match &tls.cacertfile {
        Some(path) => {
            let ca = read_pem(path)?;
            if tls.verify_peer {
                server = server.client_ca_root(Certificate::from_pem(&ca));
            }
            ClientTls::new(ca, Some((cert, key)))
        }
        None => ClientTls::none(),
    };
    Ok((Some(server), client))
}

/// `SCHEME://` + the address, with an unspecified IP replaced by loopback.
fn loopback_endpoint(scheme: &str, addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// A running control-plane member. Call [`shutdown`](Self::shutdown) to stop
/// it; dropping the handle stops it too, without waiting.
pub struct ControlPlaneHandle {
    node_id: NodeId,
    local_addr: SocketAddr,
    /// `https` when the port serves TLS, else `http`.
    scheme: &'static str,
    advertise_addr: String,
    token: Option<String>,
    admin_token: String,
    dataplane_token: String,
    raft: Raft,
    shared: Arc<SharedState>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    tasks: Vec<JoinHandle<()>>,
    store_watch: Option<StoreWatch>,
}

impl ControlPlaneHandle {
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The bound gRPC address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A loopback URL for in-process clients (the data plane in standalone
    /// mode, the REST server): `http://127.0.0.1:PORT` (`https` with TLS).
    pub fn endpoint(&self) -> String {
        loopback_endpoint(self.scheme, self.local_addr)
    }

    /// The URL other members reach this one at.
    pub fn advertise_addr(&self) -> &str {
        &self.advertise_addr
    }

    /// The member token (`controlplane.token`), if one is configured.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// This node's admin token (the content of `data_dir/admin.token`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The in-process data-plane credential: valid for this node's own id
    /// only, until this member stops; never written anywhere.
    pub fn dataplane_token(&self) -> &str {
        &self.dataplane_token
    }

    /// This member's role, term, leader, progress and membership now.
    pub fn status(&self) -> NodeStatus {
        NodeStatus::from_metrics(&self.raft.metrics().borrow())
    }

    /// Waits until a leader is known (to this member); `None` on timeout.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut metrics = self.raft.metrics();
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(leader) = metrics.borrow_and_update().current_leader {
                    return Some(leader);
                }
                if metrics.changed().await.is_err() {
                    return None;
                }
            }
        });
        found.await.ok().flatten()
    }

    /// Reads this member's applied state (which may trail the leader by the
    /// replication delay). Keep `read` short: it holds the state's read lock.
    pub fn read<R>(&self, read: impl FnOnce(&ControlState) -> R) -> R {
        self.shared.read(|applied| read(&applied.state))
    }

    /// The Raft index of the last entry applied here.
    pub fn applied_index(&self) -> Option<u64> {
        self.shared.read(|applied| applied.last_applied_index())
    }

    /// Stops serving, stops Raft, waits (up to 5 s) for open calls, then for
    /// the store to close, so that a new member can start on the same data
    /// directory as soon as this returns.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        tracing::info!(node_id = self.node_id, "control plane shutting down");
        self.shutdown.send_replace(true);
        let raft_result = self.raft.shutdown().await.map_err(|error| ShutdownError::Raft(error.to_string()));
        let mut server_result = Ok(());
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => server_result = Err(ShutdownError::Server(error.to_string())),
                Ok(Err(join_error)) => server_result = Err(ShutdownError::Server(join_error.to_string())),
                Err(_) => {
                    tracing::warn!("gRPC calls still open after the grace period; cutting them");
                    server.abort();
                    let _ = server.await;
                }
            }
        }
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                tracing::warn!("a background task did not stop in time");
            }
        }
        // Raft's storage tasks wind down after `shutdown` returns; the store
        // file stays locked until the last of them drops it.
        let store_closed = match self.store_watch.take() {
            Some(watch) => watch.closed(SHUTDOWN_GRACE).await,
            None => true,
        };
        let store_result =
            if store_closed { Ok(()) } else { Err(ShutdownError::StoreStillOpen(SHUTDOWN_GRACE)) };
        raft_result.and(server_result).and(store_result)
    }
}

impl Drop for ControlPlaneHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            server.abort();
            for task in &self.tasks {
                task.abort();
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let raft = self.raft.clone();
                runtime.spawn(async move {
                    let _ = raft.shutdown().await;
                });
            }
        }
    }
}
