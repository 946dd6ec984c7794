//! The data plane's link to the control plane: the Watch stream that keeps
//! the `ClusterView` current, heartbeats, and route registration.
//!
//! Invariants: the hot path never waits for the control plane. When no
//! member answers, the node keeps serving from its last view and retries
//! (trying each listed member in turn, with a capped backoff); on reconnect
//! it resumes from the last index it holds, or takes a fresh snapshot.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use proto::auth::BearerToken;
use proto::controlplane as pb;
use proto::controlplane::control_plane_client::ControlPlaneClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use super::routes::{PendingRoutes, RouteRegistrar};
use super::view::ClusterView;
use crate::broker::Broker;
use crate::metrics::Metrics;

/// How this node finds and speaks to the control plane.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub node_id: u64,
    /// Control-plane members, as `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    pub token: Option<String>,
    /// TLS for `https://` members (the CA, and a client certificate for
    /// mutual TLS).
    pub tls: proto::tls::ClientTls,
    /// The address this node reports for its peer link.
    pub advertise: String,
    pub heartbeat_interval: Duration,
    /// Where to serve the peer link (`None`: no peers, as in standalone mode).
    pub peer_bind: Option<std::net::SocketAddr>,
    /// How peer links behave.
    pub peers: super::peer::PeerSettings,
}

/// Why one attempt to talk to a member failed (the link retries).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("bad control-plane address {0}")]
    Address(String),
    #[error(transparent)]
    Tls(#[from] proto::tls::TlsError),
    #[error("control plane: {0}")]
    Protocol(&'static str),
    #[error("cannot reach {endpoint}: {source}")]
    Connect { endpoint: String, source: tonic::transport::Error },
    #[error("{0}")]
    Rpc(#[from] tonic::Status),
    #[error("the cluster token is not a valid header value")]
    Token,
}

/// The largest Watch event this node accepts: a `StateSnapshot` carries the
/// whole state (about 40 bytes a route, 120 a user), far past tonic's 4 MiB
/// default. Matches the control plane's encoding limit (its
/// `MAX_MESSAGE_BYTES`), so whatever a member sends, this node can read.
pub const MAX_WATCH_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

type Client = ControlPlaneClient<InterceptedService<Channel, BearerToken>>;

async fn connect(config: &LinkConfig, endpoint: &str) -> Result<Client, LinkError> {
    let channel = config
        .tls
        .endpoint(endpoint)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|source| LinkError::Connect { endpoint: endpoint.to_string(), source })?;
    let token = BearerToken::new(config.token.as_deref()).map_err(|_| LinkError::Token)?;
    Ok(ControlPlaneClient::with_interceptor(channel, token)
        .max_decoding_message_size(MAX_WATCH_MESSAGE_BYTES))
}

/// Connects to the first member that answers, starting after `start`.
async fn connect_any(config: &LinkConfig, start: &mut usize) -> Result<Client, LinkError> {
    let mut last_error = LinkError::Address("no control-plane member configured".into());
    for _ in 0..config.endpoints.len() {
        let endpoint = &config.endpoints[*start % config.endpoints.len()];
        match connect(config, endpoint).await {
            Ok(client) => return Ok(client),
            Err(error) => {
                debug!(%error, "control-plane member unavailable");
                last_error = error;
                *start += 1;
            }
        }
    }
    Err(last_error)
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((200u64 << failures.min(5)).min(5000))
}

/// Keeps `view` in step with the control plane, forever.
pub async fn watch(config: LinkConfig, view: Arc<ArcSwap<ClusterView>>, broker: Arc<Broker>) {
    let mut member = 0usize;
    let mut failures = 0u32;
    loop {
        match watch_once(&config, &view, &broker, &mut member).await {
            Ok(()) => failures = 0,
            Err(error) => {
                if failures == 0 {
                    warn!(%error, index = view.load().index, "control plane unreachable; serving from the last view");
                }
                failures += 1;
                member += 1;
            }
        }
        tokio::time::sleep(backoff(failures)).await;
    }
}

async fn watch_once(
    config: &LinkConfig,
    view: &ArcSwap<ClusterView>,
    broker: &Broker,
    member: &mut usize,
) -> Result<(), LinkError> {
    let mut client = connect_any(config, member).await?;
    let held = view.load().index;
    let request = pb::WatchRequest { node_id: config.node_id, last_index: (held > 0).then_some(held) };
    let mut stream = client.watch(request).await?.into_inner();
    // A snapshot sent in parts, until its last part came.
    let mut partial: Option<pb::StateSnapshot> = None;
    while let Some(event) = stream.message().await? {
        let event = match (event.event, partial.take()) {
            (Some(pb::watch_event::Event::SnapshotPart(part)), Some(mut snapshot)) => {
                if !snapshot.absorb(part) {
                    partial = Some(snapshot);
                    continue;
                }
                Some(pb::watch_event::Event::Snapshot(snapshot))
            }
            (Some(pb::watch_event::Event::Snapshot(snapshot)), _) if snapshot.parts_follow => {
                partial = Some(snapshot);
                continue;
            }
            (Some(pb::watch_event::Event::SnapshotPart(_)), None) => {
                return Err(LinkError::Protocol("a snapshot part without its snapshot"))
            }
            (event, None) => event,
            (_, Some(_)) => return Err(LinkError::Protocol("a snapshot's parts were interrupted")),
        };
        match event {
            Some(pb::watch_event::Event::SnapshotPart(_)) | None => {}
            Some(pb::watch_event::Event::Snapshot(snapshot)) => {
                let next = ClusterView::from_snapshot(&snapshot);
                // This node's own routes are its router's; the table keeps the others'.
                broker.remote_routes.replace_without(
                    snapshot.routes.iter().map(|r| (r.topic_filter.as_str(), r.node_ids.as_slice())),
                    Some(config.node_id),
                );
                broker.shares.replace(
                    snapshot
                        .share_groups
                        .iter()
                        .map(|g| (g.group.clone(), g.topic_filter.clone(), members(g))),
                );
                for route in &snapshot.routes {
                    broker.announced.route_listed(&route.topic_filter, &route.node_ids);
                }
                for group in &snapshot.share_groups {
                    broker.announced.group_listed(&group.group, &group.topic_filter, &members(group));
                }
                info!(
                    index = next.index,
                    users = next.users.len(),
                    routes = broker.remote_routes.len(),
                    "control-plane snapshot applied"
                );
                if let Some(registrar) = &broker.routes {
                    let held: HashSet<&str> = snapshot
                        .routes
                        .iter()
                        .filter(|r| r.node_ids.contains(&config.node_id))
                        .map(|r| r.topic_filter.as_str())
                        .collect();
                    reconcile(registrar, broker, config.node_id, &held);
                }
                view.store(Arc::new(next));
                broker.access_changed();
            }
            Some(pb::watch_event::Event::Delta(delta)) => {
                let held = view.load_full();
                for change in &delta.changes {
                    match &change.change {
                        Some(pb::change::Change::RouteSet(route)) => {
                            let others: Vec<u64> =
                                route.node_ids.iter().copied().filter(|n| *n != config.node_id).collect();
                            broker.remote_routes.set(&route.topic_filter, &others);
                            broker.announced.route_listed(&route.topic_filter, &route.node_ids);
                            // Our route went (we were declared down, say)
                            // while we still serve it: register it again.
                            if let Some(registrar) = &broker.routes {
                                if !route.node_ids.contains(&config.node_id)
                                    && broker.router.routes_filter(&route.topic_filter)
                                {
                                    registrar.filter_added(&route.topic_filter);
                                }
                            }
                        }
                        Some(pb::change::Change::ShareGroupSet(group)) => {
                            let members = members(group);
                            broker.shares.set(&group.group, &group.topic_filter, members.clone());
                            broker.announced.group_listed(&group.group, &group.topic_filter, &members);
                            if let Some(registrar) = &broker.routes {
                                for client in broker.router.group_members(&group.group, &group.topic_filter) {
                                    let listed =
                                        members.iter().any(|(n, c)| *n == config.node_id && **c == *client);
                                    if !listed {
                                        registrar.share_joined((
                                            group.group.clone(),
                                            group.topic_filter.clone(),
                                            client.to_string(),
                                        ));
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                let next = held.apply(&delta);
                debug!(index = next.index, "control-plane delta applied");
                let access_changed = !Arc::ptr_eq(&held.users, &next.users)
                    || !Arc::ptr_eq(&held.acl, &next.acl)
                    || !Arc::ptr_eq(&held.bans, &next.bans);
                view.store(Arc::new(next));
                if access_changed {
                    broker.access_changed();
                }
            }
        }
    }
    Ok(())
}

fn members(group: &pb::ShareGroup) -> Vec<(u64, String)> {
    group.members.iter().map(|m| (m.node_id, m.client_id.clone())).collect()
}

/// After a snapshot: register what we serve and the control plane does not
/// know, and withdraw what it holds for us (`held`) that we no longer serve.
fn reconcile(registrar: &RouteRegistrar, broker: &Broker, node_id: u64, held: &HashSet<&str>) {
    let local = broker.router.share_members();
    for member in &local {
        if !broker.shares.has(&member.0, &member.1, node_id, &member.2) {
            registrar.share_joined(member.clone());
        }
    }
    for member in broker.shares.members_on(node_id) {
        if !local.contains(&member) {
            registrar.share_left(member);
        }
    }
    let local = broker.router.plain_filters();
    for filter in &local {
        if !held.contains(filter.as_str()) {
            registrar.filter_added(filter);
        }
    }
    for filter in held {
        if !local.contains(*filter) {
            registrar.filter_removed(filter);
        }
    }
}

/// Sends heartbeats (with the connection count and the view's index).
pub async fn heartbeat(config: LinkConfig, view: Arc<ArcSwap<ClusterView>>, broker: Arc<Broker>) {
    let mut member = 0usize;
    let mut client: Option<Client> = None;
    let mut ticker = tokio::time::interval(config.heartbeat_interval);
    loop {
        ticker.tick().await;
        if client.is_none() {
            client = connect_any(&config, &mut member).await.ok();
        }
        let Some(active) = client.as_mut() else { continue };
        let request = pb::HeartbeatRequest {
            node_id: config.node_id,
            address: config.advertise.clone(),
            connections: Metrics::get(&broker.metrics.connections),
            snapshot_index: view.load().index,
        };
        if let Err(status) = active.heartbeat(request).await {
            debug!(%status, "heartbeat failed");
            client = None;
            member += 1;
        }
    }
}

/// Bytes of names in one route batch: well below the 4 MiB a gRPC server
/// takes by default, so a large backlog goes as several batches instead of
/// one that is refused and retried forever.
const ROUTE_BATCH_BYTES: usize = 1024 * 1024;

/// Sends route changes in batches.
pub async fn register_routes(config: LinkConfig, registrar: Arc<RouteRegistrar>) {
    let mut member = 0usize;
    let mut client: Option<Client> = None;
    let mut failures = 0u32;
    loop {
        registrar.changed().await;
        // Let a burst of subscribes gather into one batch.
        tokio::time::sleep(Duration::from_millis(50)).await;
        loop {
            let batch = registrar.take_bounded(ROUTE_BATCH_BYTES);
            if batch.is_empty() {
                break;
            }
            if client.is_none() {
                client = connect_any(&config, &mut member).await.ok();
            }
            let sent = match client.as_mut() {
                Some(active) => active.register_routes(to_pb(config.node_id, &batch)).await.map(|_| ()),
                None => Err(tonic::Status::unavailable("no control-plane member answers")),
            };
            match sent {
                Ok(()) => failures = 0,
                Err(status) => {
                    debug!(%status, "route registration failed; will retry");
                    registrar.put_back(batch);
                    client = None;
                    member += 1;
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }
}

fn to_pb(node_id: u64, batch: &PendingRoutes) -> pb::RouteBatch {
    let share = |set: &std::collections::HashSet<super::routes::ShareMember>| {
        set.iter()
            .map(|(group, filter, client)| pb::ShareSubscription {
                group: group.clone(),
                topic_filter: filter.clone(),
                client_id: client.clone(),
            })
            .collect()
    };
    pb::RouteBatch {
        node_id,
        add: batch.add.iter().cloned().collect(),
        remove: batch.remove.iter().cloned().collect(),
        share_add: share(&batch.share_add),
        share_remove: share(&batch.share_remove),
    }
}

#[cfg(test)]
mod tests {
    use proto::controlplane::control_plane_server::{ControlPlane, ControlPlaneServer};
    use tonic::transport::server::TcpIncoming;
    use tonic::{Request, Response, Status};

    use super::*;

    /// A control plane whose Watch sends one snapshot of `routes` routes.
    struct BigSnapshot {
        routes: usize,
    }

    type Events = tonic::codegen::BoxStream<pb::WatchEvent>;

    #[tonic::async_trait]
    impl ControlPlane for BigSnapshot {
        type WatchStream = Events;

        async fn watch(&self, _request: Request<pb::WatchRequest>) -> Result<Response<Events>, Status> {
            let routes = (0..self.routes)
                .map(|i| pb::Route {
                    topic_filter: format!("fleet/n1/device-{i:07}/+/state"),
                    node_ids: vec![1],
                })
                .collect();
            let snapshot = pb::StateSnapshot { index: 7, routes, ..Default::default() };
            let event = pb::WatchEvent { event: Some(pb::watch_event::Event::Snapshot(snapshot)) };
            Ok(Response::new(Box::pin(futures_util::stream::iter([Ok(event)]))))
        }

        async fn register_routes(
            &self,
            _: Request<pb::RouteBatch>,
        ) -> Result<Response<pb::WriteReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn heartbeat(
            &self,
            _: Request<pb::HeartbeatRequest>,
        ) -> Result<Response<pb::WriteReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    /// Regression (control-plane benchmark): the Watch client kept tonic's
    /// 4 MiB decoding limit, so a node joining a cluster with a large state
    /// (200,000 routes is about 8 MiB) could never take its first snapshot
    /// and retried forever.
    #[tokio::test]
    async fn watch_takes_a_snapshot_larger_than_4_mib() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = ControlPlaneServer::new(BigSnapshot { routes: 200_000 })
            .max_encoding_message_size(MAX_WATCH_MESSAGE_BYTES);
        let serving = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        let config = LinkConfig {
            node_id: 1,
            endpoints: vec![endpoint.clone()],
            token: None,
            tls: proto::tls::ClientTls::none(),
            advertise: "127.0.0.1:1".into(),
            heartbeat_interval: Duration::from_secs(2),
            peer_bind: None,
            peers: Default::default(),
        };
        let mut client = connect(&config, &endpoint).await.expect("connect");
        let request = pb::WatchRequest { node_id: 1, last_index: None };
        let mut stream = client.watch(request).await.expect("watch").into_inner();
        let event = stream.message().await.expect("a snapshot over 4 MiB is accepted").expect("one event");
        let Some(pb::watch_event::Event::Snapshot(snapshot)) = event.event else { panic!("not a snapshot") };
        assert!(prost::Message::encoded_len(&snapshot) > 4 * 1024 * 1024);
        let table = crate::cluster::route_table::RouteTable::new();
        table.replace(snapshot.routes.iter().map(|r| (r.topic_filter.as_str(), r.node_ids.as_slice())));
        assert_eq!(table.len(), 200_000);
        serving.abort();
    }
}
