//! The data plane: stateless nodes that terminate MQTT connections, keep
//! sessions in memory, and route messages between local subscribers.
//!
//! Start with [`Node::start`]: it binds every enabled listener (failing if
//! one cannot be bound), then serves until [`Node::shutdown`]. The modules
//! follow a message: `listener` accepts, `transport` frames bytes,
//! `connection` speaks MQTT with one client, `session` and `mailbox` hold
//! what a client has not received yet, `router` finds subscribers,
//! `retained` keeps the last message per topic, `broker` ties them together.
// One `unsafe` block, in `hibernate.rs`, with its SAFETY argument.
#![deny(unsafe_code)]

pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
mod connection;
pub mod door;
pub(crate) mod hibernate;
pub mod hooks;
pub(crate) mod lazymap;
pub(crate) mod listener;
pub mod mailbox;
pub mod message;
pub(crate) mod metrics;
mod presence;
pub mod pressure;
mod proxy;
pub(crate) mod registry;
pub(crate) mod retained;
pub mod router;
pub(crate) mod session;
pub(crate) mod smallmap;
pub(crate) mod sys;
pub(crate) mod tls;
pub mod topic;
pub(crate) mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::info;

pub use broker::Broker;
pub use config::DataplaneConfig;

use listener::Protocol;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("listeners.{listener}.bind: cannot bind {addr}: {source}")]
    Bind { listener: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("dataplane.peer_bind: cannot bind {addr}: {source}")]
    PeerBind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Auth(#[from] auth::ChainError),
}

/// A running data-plane node.
pub struct Node {
    pub broker: Arc<Broker>,
    /// Bound addresses by listener name (`tcp`, `tls`, `ws`, `wss`).
    pub addresses: Vec<(&'static str, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Validates the config, binds every enabled listener and starts serving.
    /// With `link`, the node follows that control plane (users, ACLs,
    /// bans) and registers its routes there; without, it serves on the
    /// config alone.
    pub async fn start(
        config: DataplaneConfig,
        node_name: String,
        link: Option<cluster::link::LinkConfig>,
    ) -> Result<Node, StartError> {
        Node::start_with(config, node_name, link, hooks::Extensions::default()).await
    }

    /// [`Node::start`], with `extensions` behind the built-in hooks.
    pub async fn start_with(
        config: DataplaneConfig,
        node_name: String,
        link: Option<cluster::link::LinkConfig>,
        extensions: hooks::Extensions,
    ) -> Result<Node, StartError> {
        config.validate()?;
        let listeners = config.listeners.clone();
        let mut bound = Vec::new();
        if listeners.tcp.enabled {
            bound.push(("tcp", listener::bind("tcp", listeners.tcp.bind).await?, Protocol::Mqtt));
        }
        if listeners.tls.enabled {
            let acceptor = tls::acceptor("listeners.tls", &listeners.tls.files())?;
            bound.push(("tls", listener::bind("tls", listeners.tls.bind).await?, Protocol::Tls(acceptor)));
        }
        if listeners.ws.enabled {
            let origins = listeners.ws.allowed_origins.clone().into();
            let protocol = Protocol::Ws { path: listeners.ws.path.clone(), origins };
            bound.push(("ws", listener::bind("ws", listeners.ws.bind).await?, protocol));
        }
        if listeners.wss.enabled {
            let acceptor = tls::acceptor("listeners.wss", &listeners.wss.files())?;
            let origins = listeners.wss.allowed_origins.clone().into();
            let protocol = Protocol::Wss { acceptor, path: listeners.wss.path.clone(), origins };
            bound.push(("wss", listener::bind("wss", listeners.wss.bind).await?, protocol));
        }
        // Without a control plane, the (empty) view is all there will be;
        // with one, access is refused until its first snapshot arrives.
        let first_view = cluster::view::ClusterView { loaded: link.is_none(), ..Default::default() };
        let view = Arc::new(arc_swap::ArcSwap::from_pointee(first_view));
        let registrar = link.as_ref().map(|_| Arc::new(cluster::routes::RouteRegistrar::default()));
        let chains = auth::Chains::load(&config.auth, &config.listeners, extensions.backends.as_deref())?;
        let acl_files = chains.acl_files.clone();
        let rule_sources = chains.rule_sources.clone();
        let broker = Broker::new(config, node_name, view.clone(), registrar.clone(), chains, extensions);
        let mut addresses = Vec::new();
        let mut tasks = Vec::new();
        if let (Some(link), Some(registrar)) = (link, registrar) {
            if let Some(peer_bind) = link.peer_bind {
                let socket = cluster::peer::server::bind(peer_bind)
                    .await
                    .map_err(|source| StartError::PeerBind { addr: peer_bind, source })?;
                let peers =
                    cluster::peer::outbox::PeerLinks::new(link.node_id, view.clone(), link.peers.clone());
                broker.set_peers(peers.clone());
                tasks.push(tokio::spawn(cluster::announce::run(peers.clone(), broker.announced.clone())));
                tasks.push(tokio::spawn(cluster::sessions::run_claimer(peers.clone())));
                tasks.push(tokio::spawn(cluster::reconcile::run(broker.clone(), peers.clone())));
                tasks.push(tokio::spawn(cluster::retained_sync::run(broker.clone(), peers)));
                tasks.push(tokio::spawn(cluster::peer::server::serve(broker.clone(), socket)));
            }
            tasks.push(tokio::spawn(cluster::link::watch(link.clone(), view.clone(), broker.clone())));
            tasks.push(tokio::spawn(cluster::link::heartbeat(link.clone(), view, broker.clone())));
            tasks.push(tokio::spawn(cluster::link::register_routes(link, registrar)));
        }
        for (name, socket, protocol) in bound {
            let addr = socket.local_addr().map_err(|source| StartError::Bind {
                listener: name,
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            addresses.push((name, addr));
            tasks.push(tokio::spawn(listener::accept_loop(broker.clone(), socket, protocol)));
        }
        for source in rule_sources {
            tasks.push(tokio::spawn(source.sweep()));
        }
        for file in acl_files {
            let judged = broker.clone();
            tasks.push(tokio::spawn(file.watch(move || judged.access_changed())));
        }
        tasks.push(tokio::spawn(sys::run(broker.clone())));
        tasks.push(tokio::spawn(broker::revalidate(broker.clone())));
        Ok(Node { broker, addresses, tasks })
    }

    /// Stops accepting, tells every client the server is shutting down, and
    /// waits (up to `grace`) for connections to close.
    pub async fn shutdown(self, grace: Duration) {
        self.broker.begin_shutdown();
        if let Some(peers) = self.broker.peers() {
            peers.shutdown();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while metrics::Metrics::get(&self.broker.metrics.connections) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for task in self.tasks {
            task.abort();
        }
        info!("data plane stopped");
    }
}
