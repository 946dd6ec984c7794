//! Route registration as data-plane nodes do it: each client is one node
//! with its own connection, sending `RegisterRoutes` batches one at a time
//! (the link's `register_routes` never has two in flight).
//!
//! Client `i` owns a share of the `--routes` filters,
//! `fleet/n{node}/device-{k:07}/+/state`. The write step sweeps over its
//! share, adding every filter, then removing them, then adding them again,
//! so every batch changes `--batch` routes and the table never grows past
//! `--routes`; the fill step then adds whatever is missing, so the snapshot
//! step sees exactly `--routes` routes.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use proto::controlplane::RouteBatch;
use serde_json::json;

use crate::args::{Config, Via};
use crate::cluster::{Cluster, DataPlaneClient};
use crate::stats::{emit, merge, round, say, Summary};

/// Data-plane node ids of the route-writing clients start here.
pub const FIRST_NODE_ID: u64 = 101;
/// How long a client keeps retrying a batch that fails (no leader, ...).
const RETRY_FOR: Duration = Duration::from_secs(30);

pub fn topic_filter(node_id: u64, k: u64) -> String {
    format!("fleet/n{node_id}/device-{k:07}/+/state")
}

/// One simulated data-plane node and where it is in its sweep.
pub struct RouteWriter {
    pub node_id: u64,
    client: DataPlaneClient,
    /// The voter it talks to.
    position: usize,
    share: u64,
    batch: u64,
    /// The next filter of the sweep.
    next: u64,
    /// Adding (true) or removing (false) in this sweep.
    adding: bool,
}

/// What one client did in a step.
#[derive(Default)]
struct Progress {
    latencies: Vec<Duration>,
    indexes: Vec<u64>,
    routes: u64,
    retries: u64,
}

impl RouteWriter {
    /// One writer per client; the shares add up to `config.routes`.
    pub async fn connect_all(cluster: &Cluster, config: &Config) -> Result<Vec<RouteWriter>> {
        let leader = cluster.leader()?;
        let followers: Vec<usize> = (0..cluster.voters.len()).filter(|&p| p != leader).collect();
        let clients = config.clients as u64;
        let mut writers = Vec::new();
        for i in 0..config.clients {
            let position = match config.via {
                Via::Spread => i % cluster.voters.len(),
                Via::Leader => leader,
                Via::Followers => followers[i % followers.len()],
            };
            let share = config.routes / clients + u64::from((i as u64) < config.routes % clients);
            writers.push(RouteWriter {
                node_id: FIRST_NODE_ID + i as u64,
                client: cluster.dataplane(position, config.watch_max_message_bytes).await?,
                position,
                share,
                batch: config.batch,
                next: 0,
                adding: true,
            });
        }
        Ok(writers)
    }

    /// The next batch of the sweep (not yet sent).
    fn sweep_batch(&self) -> (RouteBatch, u64) {
        let end = (self.next + self.batch).min(self.share);
        let filters: Vec<String> = (self.next..end).map(|k| topic_filter(self.node_id, k)).collect();
        let count = filters.len() as u64;
        let batch = if self.adding {
            RouteBatch { node_id: self.node_id, add: filters, ..Default::default() }
        } else {
            RouteBatch { node_id: self.node_id, remove: filters, ..Default::default() }
        };
        (batch, count)
    }

    fn advance(&mut self, count: u64) {
        self.next += count;
        if self.next >= self.share {
            self.next = 0;
            self.adding = !self.adding;
        }
    }

    /// The filters of the share not registered now.
    fn missing(&self) -> Range<u64> {
        if self.adding {
            self.next..self.share
        } else {
            0..self.next
        }
    }

    /// Sends one batch, retrying what fails for up to [`RETRY_FOR`];
    /// answers the call's latency (of the call that succeeded) and index.
    async fn send(&mut self, batch: RouteBatch, progress: &mut Progress) -> Result<(Duration, u64)> {
        let give_up = Instant::now() + RETRY_FOR;
        loop {
            let started = Instant::now();
            match self.client.register_routes(batch.clone()).await {
                Ok(reply) => return Ok((started.elapsed(), reply.into_inner().index)),
                Err(status) if Instant::now() < give_up => {
                    tracing::warn!(node_id = self.node_id, %status, "route batch failed; retrying");
                    progress.retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => {
                    return Err(status).with_context(|| format!("route batch of node {}", self.node_id))
                }
            }
        }
    }

    /// Sweeps until `deadline`.
    async fn write_until(mut self, deadline: Instant) -> Result<(RouteWriter, Progress)> {
        let mut progress = Progress::default();
        while Instant::now() < deadline {
            let (batch, count) = self.sweep_batch();
            let (latency, index) = self.send(batch, &mut progress).await?;
            if latency > Duration::from_millis(500) {
                tracing::info!(
                    node_id = self.node_id,
                    index,
                    latency_ms = latency.as_millis() as u64,
                    "slow route batch"
                );
            }
            self.advance(count);
            progress.latencies.push(latency);
            progress.indexes.push(index);
            progress.routes += count;
        }
        Ok((self, progress))
    }

    /// Adds every filter of the share not registered now.
    async fn fill(mut self) -> Result<(RouteWriter, Progress)> {
        let mut progress = Progress::default();
        let missing = self.missing();
        let mut start = missing.start;
        while start < missing.end {
            let end = (start + self.batch).min(missing.end);
            let add = (start..end).map(|k| topic_filter(self.node_id, k)).collect();
            let (latency, index) = self
                .send(RouteBatch { node_id: self.node_id, add, ..Default::default() }, &mut progress)
                .await?;
            progress.latencies.push(latency);
            progress.indexes.push(index);
            progress.routes += end - start;
            start = end;
        }
        // Everything is in: the next sweep removes.
        self.next = 0;
        self.adding = false;
        Ok((self, progress))
    }
}

/// Runs every writer's `step` concurrently; answers the writers back, the
/// merged progress and the wall time.
async fn run_all<F, Fut>(writers: Vec<RouteWriter>, step: F) -> Result<(Vec<RouteWriter>, Progress, Duration)>
where
    F: Fn(RouteWriter) -> Fut,
    Fut: std::future::Future<Output = Result<(RouteWriter, Progress)>> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = writers.into_iter().map(|writer| tokio::spawn(step(writer))).collect();
    let mut writers = Vec::new();
    let mut total = Progress::default();
    for task in tasks {
        let (writer, progress) = task.await??;
        writers.push(writer);
        total.latencies.extend(progress.latencies);
        total.indexes.extend(progress.indexes);
        total.routes += progress.routes;
        total.retries += progress.retries;
    }
    Ok((writers, total, started.elapsed()))
}

/// Step 1: route-batch write throughput for `config.duration`.
pub async fn write_step(
    cluster: &Cluster,
    config: &Config,
    writers: Vec<RouteWriter>,
) -> Result<Vec<RouteWriter>> {
    let leader = cluster.leader()?;
    let applied_before = cluster.voters[leader].applied_index().unwrap_or(0);
    let positions: Vec<usize> = writers.iter().map(|writer| writer.position + 1).collect();
    let deadline = Instant::now() + config.duration;
    let (writers, progress, elapsed) = run_all(writers, move |writer| writer.write_until(deadline)).await?;
    let applied_after = cluster.voters[leader].applied_index().unwrap_or(0);
    let batches = progress.latencies.len();
    let entries = progress.indexes.iter().collect::<BTreeSet<_>>().len();
    let seconds = elapsed.as_secs_f64();
    let latency = Summary::of(&progress.latencies);
    say(format!(
        "route writes: {} clients (via {}: voters {:?}), {} filters a batch, {:.1} s: {} batches = {:.1} batches/s, {:.0} routes/s; call {}",
        config.clients,
        config.via.as_str(),
        positions,
        config.batch,
        seconds,
        batches,
        batches as f64 / seconds,
        progress.routes as f64 / seconds,
        latency.human(),
    ));
    say(format!(
        "  {} Raft entries carried them ({:.2} batches an entry); the leader's applied index moved by {}; {} retries",
        entries,
        batches as f64 / entries.max(1) as f64,
        applied_after - applied_before,
        progress.retries,
    ));
    emit(merge(
        json!({
            "measurement": "route_writes",
            "clients": config.clients,
            "via": config.via.as_str(),
            "batch": config.batch,
            "seconds": round(seconds),
            "batches": batches,
            "routes": progress.routes,
            "batches_per_sec": round(batches as f64 / seconds),
            "routes_per_sec": round(progress.routes as f64 / seconds),
            "raft_entries": entries,
            "batches_per_entry": round(batches as f64 / entries.max(1) as f64),
            "applied_index_delta": applied_after - applied_before,
            "retries": progress.retries,
        }),
        latency.json(""),
    ));
    Ok(writers)
}

/// Fills the route table up to exactly `config.routes`.
pub async fn fill_step(
    cluster: &Cluster,
    config: &Config,
    writers: Vec<RouteWriter>,
) -> Result<Vec<RouteWriter>> {
    let (writers, progress, elapsed) = run_all(writers, RouteWriter::fill).await?;
    cluster.wait_applied(cluster.highest_applied(), Duration::from_secs(120)).await?;
    let routes = cluster.voters[0].read(|state| state.routes().len()) as u64;
    if routes != config.routes {
        bail!("the route table holds {routes} routes, expected {}", config.routes);
    }
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let batches = progress.latencies.len();
    say(format!(
        "route fill: {} more routes in {} batches, {:.1} s ({:.0} routes/s); the table holds {} routes",
        progress.routes,
        batches,
        seconds,
        progress.routes as f64 / seconds,
        routes,
    ));
    emit(json!({
        "measurement": "route_fill",
        "routes_added": progress.routes,
        "batches": batches,
        "seconds": round(seconds),
        "routes_per_sec": round(progress.routes as f64 / seconds),
        "routes_total": routes,
        "retries": progress.retries,
        "rss_mib": crate::stats::rss_mib(),
    }));
    Ok(writers)
}
