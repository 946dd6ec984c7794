//! Three control-plane voters in this process, formed the way an operator
//! forms them: member 1 bootstraps, 2 and 3 start empty and are joined with
//! the admin API's `ClusterJoin`. Also the gRPC clients the steps use, set
//! up as their real counterparts are (a data-plane node's link, `mqttctl`),
//! and the heartbeats that keep the simulated data-plane nodes alive.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use controlplane::{ControlPlane, ControlPlaneConfig, ControlPlaneHandle, NodeId};
use proto::admin::admin_client::AdminClient;
use proto::admin::ClusterJoinRequest;
use proto::auth::BearerToken;
use proto::controlplane::control_plane_client::ControlPlaneClient;
use proto::controlplane::HeartbeatRequest;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The cluster token every call carries, as in a real deployment.
const TOKEN: &str = "controlplane-bench";
/// How long forming the cluster may take.
const FORMING: Duration = Duration::from_secs(60);
/// A data-plane node's heartbeat interval (the daemon's default).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

pub type Admin = AdminClient<InterceptedService<Channel, BearerToken>>;
pub type DataPlaneClient = ControlPlaneClient<InterceptedService<Channel, BearerToken>>;

pub struct Cluster {
    /// Voter `i` has node id `i + 1`; voter 0 bootstrapped the cluster.
    pub voters: Vec<ControlPlaneHandle>,
    /// Kept so the data directories live as long as the voters.
    _data_dirs: Vec<TempDir>,
}

/// `http://` channel with the settings of the data plane's link.
pub async fn channel(endpoint: &str) -> Result<Channel> {
    Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

pub fn token() -> Result<BearerToken> {
    Ok(BearerToken::new(Some(TOKEN))?)
}

impl Cluster {
    /// Starts three voters on free loopback ports with the default timings
    /// (`ControlPlaneConfig::new`; `snapshot_every` if given) and forms the
    /// cluster.
    pub async fn start(snapshot_every: Option<u64>) -> Result<Cluster> {
        let any_port: SocketAddr = "127.0.0.1:0".parse()?;
        let mut voters = Vec::new();
        let mut data_dirs = Vec::new();
        for node_id in 1..=3 {
            let dir = tempfile::Builder::new().prefix("controlplane-bench-").tempdir()?;
            let mut config = ControlPlaneConfig::new(node_id, dir.path(), any_port);
            config.bootstrap = node_id == 1;
            config.token = Some(TOKEN.to_owned());
            if let Some(every) = snapshot_every {
                config.snapshot_every = every;
            }
            voters.push(
                ControlPlane::start(config).await.with_context(|| format!("starting voter {node_id}"))?,
            );
            data_dirs.push(dir);
        }
        let cluster = Cluster { voters, _data_dirs: data_dirs };
        if cluster.voters[0].wait_for_leader(FORMING).await != Some(1) {
            bail!("voter 1 did not become the leader");
        }
        let mut admin = cluster.admin(0).await?;
        for joining in &cluster.voters[1..] {
            let request = ClusterJoinRequest { addr: joining.endpoint(), learner: false };
            admin
                .cluster_join(request)
                .await
                .with_context(|| format!("joining voter {}", joining.node_id()))?;
        }
        let deadline = Instant::now() + FORMING;
        while !cluster.formed() {
            if Instant::now() > deadline {
                bail!("the three voters did not agree on a leader within {FORMING:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(cluster)
    }

    /// Every voter follows the same leader and counts three voters.
    fn formed(&self) -> bool {
        let statuses: Vec<_> = self.voters.iter().map(|voter| voter.status()).collect();
        let leader = statuses[0].leader;
        leader.is_some()
            && statuses.iter().all(|status| {
                status.leader == leader && status.members.iter().filter(|(_, _, voter)| *voter).count() == 3
            })
    }

    /// The position (0..3) of the current leader.
    pub fn leader(&self) -> Result<usize> {
        let leader = self.voters[0].status().leader.context("no leader")?;
        self.position(leader)
    }

    fn position(&self, node_id: NodeId) -> Result<usize> {
        self.voters.iter().position(|voter| voter.node_id() == node_id).context("leader is not a voter")
    }

    /// "leader", "follower", ... for the voter at `position`.
    pub fn role(&self, position: usize) -> &'static str {
        self.voters[position].status().role.as_str()
    }

    /// An admin client to the voter at `position`, as `mqttctl` has.
    pub async fn admin(&self, position: usize) -> Result<Admin> {
        let channel = channel(&self.voters[position].endpoint()).await?;
        Ok(AdminClient::with_interceptor(channel, token()?))
    }

    /// A data-plane node's client to the voter at `position`, with its own
    /// connection and the data plane's Watch decoding limit (or another).
    pub async fn dataplane(&self, position: usize, max_message_bytes: usize) -> Result<DataPlaneClient> {
        let channel = channel(&self.voters[position].endpoint()).await?;
        Ok(ControlPlaneClient::with_interceptor(channel, token()?)
            .max_decoding_message_size(max_message_bytes))
    }

    /// The highest index applied on any voter.
    pub fn highest_applied(&self) -> u64 {
        self.voters.iter().filter_map(|voter| voter.applied_index()).max().unwrap_or(0)
    }

    /// Waits until every voter applied `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.voters.iter().all(|voter| voter.applied_index() >= Some(index)) {
            if Instant::now() > deadline {
                bail!("not every voter applied index {index} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Stops the three voters together.
    pub async fn shutdown(self) -> Result<()> {
        let stopping: Vec<_> = self.voters.into_iter().map(|voter| tokio::spawn(voter.shutdown())).collect();
        for stopped in stopping {
            stopped.await?.context("stopping a voter")?;
        }
        Ok(())
    }
}

/// Heartbeats for simulated data-plane nodes, so the leader's housekeeping
/// does not mark them down (15 s) and then drop their routes (60 s later),
/// as it would for a real node that fell silent.
pub struct Heartbeats {
    tasks: Vec<JoinHandle<()>>,
}

impl Heartbeats {
    pub async fn start(cluster: &Cluster, node_ids: &[u64]) -> Result<Heartbeats> {
        let mut tasks = Vec::new();
        for (i, &node_id) in node_ids.iter().enumerate() {
            let mut client = cluster.dataplane(i % cluster.voters.len(), 4 * 1024 * 1024).await?;
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
                loop {
                    ticker.tick().await;
                    let request = HeartbeatRequest {
                        node_id,
                        address: format!("127.0.0.1:{}", 7000 + node_id),
                        connections: 0,
                        snapshot_index: 0,
                    };
                    if let Err(status) = client.heartbeat(request).await {
                        tracing::warn!(node_id, %status, "heartbeat failed");
                    }
                }
            }));
        }
        Ok(Heartbeats { tasks })
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
