//! Step 3: commit-to-apply latency. Three data-plane nodes watch, one on
//! each voter, and keep a `ClusterView` current as the data plane's link
//! does (`ClusterView::apply` while the previous view is still held). Then
//! `--writes` writes are made at `--rate` per second through the leader;
//! for each write and each node, the latency runs from the write's call
//! returning (the entry is committed and applied on the leader) to the
//! node receiving, and then having applied, the first event whose index
//! is at or past the write's.
//!
//! A node can receive the delta before the reply is back (the leader
//! publishes to its Watch streams as it applies, and followers often learn
//! of the commit before the reply has crossed gRPC): those pairs count as
//! 0 ms and are reported as `before_reply`. So the step also reports the
//! time from the call's start, an upper bound (the commit happened between
//! the two).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dataplane::cluster::view::ClusterView;
use parking_lot::Mutex;
use proto::admin::{AclAddRequest, AclDeleteRequest, UserAddRequest};
use proto::controlplane::watch_event::Event;
use proto::controlplane::{acl_who, AclAction, AclPermission, AclRule, AclWho, RouteBatch, WatchRequest};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::args::{Config, WriteKind};
use crate::cluster::{Admin, Cluster, DataPlaneClient};
use crate::stats::{emit, merge, round, say, Summary};

/// Data-plane node ids of the watchers start here.
const FIRST_WATCHER_ID: u64 = 301;
/// The node whose route the `route` write kind adds and removes.
pub const PROBE_NODE_ID: u64 = 199;
/// How long the watchers may take to get their first snapshot, and to catch
/// up with the last write.
const CATCH_UP: Duration = Duration::from_secs(120);

/// An event as one watcher saw it.
#[derive(Clone, Copy)]
struct Arrival {
    index: u64,
    received: Instant,
    applied: Instant,
    snapshot: bool,
}

/// One simulated data-plane node following a voter.
struct Watcher {
    position: usize,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    /// The index of the view it holds.
    index: watch::Receiver<u64>,
    task: JoinHandle<Result<()>>,
}

impl Watcher {
    async fn start(cluster: &Cluster, config: &Config, position: usize) -> Result<Watcher> {
        let mut client = cluster.dataplane(position, config.watch_max_message_bytes).await?;
        let node_id = FIRST_WATCHER_ID + position as u64;
        let mut stream = client.watch(WatchRequest { node_id, last_index: None }).await?.into_inner();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (index_sender, index) = watch::channel(0);
        let record = arrivals.clone();
        let task = tokio::spawn(async move {
            let mut view = Arc::new(ClusterView::default());
            let mut partial: Option<proto::controlplane::StateSnapshot> = None;
            while let Some(event) = stream.message().await? {
                let received = Instant::now();
                let (next, snapshot) = match event.event {
                    Some(Event::Snapshot(snapshot)) if snapshot.parts_follow => {
                        partial = Some(snapshot);
                        continue;
                    }
                    Some(Event::SnapshotPart(part)) => {
                        let Some(mut held) = partial.take() else { continue };
                        if !held.absorb(part) {
                            partial = Some(held);
                            continue;
                        }
                        (ClusterView::from_snapshot(&held), true)
                    }
                    Some(Event::Snapshot(snapshot)) => (ClusterView::from_snapshot(&snapshot), true),
                    Some(Event::Delta(delta)) => (view.apply(&delta), false),
                    None => continue,
                };
                // As the link's ArcSwap does: the old view goes only once
                // the new one is in place.
                view = Arc::new(next);
                let arrival = Arrival { index: view.index, received, applied: Instant::now(), snapshot };
                record.lock().push(arrival);
                index_sender.send_replace(view.index);
            }
            Ok(())
        });
        Ok(Watcher { position, arrivals, index, task })
    }

    async fn wait_for(&mut self, index: u64, timeout: Duration) -> Result<()> {
        let reached = tokio::time::timeout(timeout, self.index.wait_for(|held| *held >= index)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("the watcher on voter {} stopped", self.position + 1),
            Err(_) => bail!(
                "the watcher on voter {} did not reach index {index} within {timeout:?}",
                self.position + 1
            ),
        }
    }
}

/// One write of the step, as the writer saw it: the entry was committed
/// somewhere between `called` and `returned`.
struct Written {
    index: u64,
    called: Instant,
    returned: Instant,
}

/// Makes write number `n` of the chosen kind; answers its Raft index.
struct Writes {
    kind: WriteKind,
    admin: Admin,
    routes: DataPlaneClient,
    hash: String,
    /// The rule added by the previous write, deleted by the next.
    last_rule: Option<u64>,
    /// The route added by the previous write, removed by the next.
    probe_route: Option<String>,
}

impl Writes {
    async fn make(&mut self, n: usize) -> Result<u64> {
        let index = match self.kind {
            WriteKind::Acl => match self.last_rule.take() {
                None => {
                    let rule = AclRule {
                        who: Some(AclWho { who: Some(acl_who::Who::Username(format!("probe-{n}"))) }),
                        action: AclAction::Publish.into(),
                        topic_filter: format!("probe/{n}/#"),
                        permission: AclPermission::Allow.into(),
                        id: 0,
                    };
                    let added =
                        self.admin.acl_add(AclAddRequest { rule: Some(rule), position: None }).await?;
                    let added = added.into_inner();
                    self.last_rule = Some(added.id);
                    added.index
                }
                Some(id) => self.admin.acl_delete(AclDeleteRequest { id }).await?.into_inner().index,
            },
            WriteKind::User => {
                let request = UserAddRequest {
                    username: format!("probe-{n}-{}", std::process::id()),
                    password_hash: Some(self.hash.clone()),
                    ..Default::default()
                };
                self.admin.user_add(request).await?.into_inner().index
            }
            WriteKind::Route => {
                let batch = match self.probe_route.take() {
                    None => {
                        let filter = format!("probe/{n}/+");
                        self.probe_route = Some(filter.clone());
                        RouteBatch { node_id: PROBE_NODE_ID, add: vec![filter], ..Default::default() }
                    }
                    Some(filter) => {
                        RouteBatch { node_id: PROBE_NODE_ID, remove: vec![filter], ..Default::default() }
                    }
                };
                self.routes.register_routes(batch).await?.into_inner().index
            }
        };
        Ok(index)
    }
}

pub async fn step(cluster: &Cluster, config: &Config, hash: &str) -> Result<()> {
    let leader = cluster.leader()?;
    let mut watchers = Vec::new();
    let opened = Instant::now();
    for position in 0..cluster.voters.len() {
        watchers.push(Watcher::start(cluster, config, position).await?);
    }
    // Any index at all means the first snapshot is in (heartbeats that
    // change nothing move the log but not the views).
    for watcher in &mut watchers {
        watcher.wait_for(1, CATCH_UP).await.context("waiting for the first snapshot")?;
    }
    say(format!(
        "commit-to-apply: 3 data-plane watchers (one per voter) took their snapshot within {:.1} s",
        opened.elapsed().as_secs_f64()
    ));

    let mut writes = Writes {
        kind: config.write_kind,
        admin: cluster.admin(leader).await?,
        routes: cluster.dataplane(leader, config.watch_max_message_bytes).await?,
        hash: hash.to_owned(),
        last_rule: None,
        probe_route: None,
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / config.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = Vec::with_capacity(config.writes);
    let mut call_latencies = Vec::with_capacity(config.writes);
    let started = Instant::now();
    for n in 0..config.writes {
        ticker.tick().await;
        let call = Instant::now();
        let index = writes.make(n).await.with_context(|| format!("write {n}"))?;
        let returned = Instant::now();
        call_latencies.push(returned - call);
        written.push(Written { index, called: call, returned });
    }
    let write_seconds = started.elapsed().as_secs_f64();
    let last = written.iter().map(|write| write.index).max().unwrap_or(0);
    for watcher in &mut watchers {
        watcher.wait_for(last, CATCH_UP).await?;
    }

    report(cluster, config, leader, &watchers, &written, &call_latencies, write_seconds);
    for watcher in watchers {
        watcher.task.abort();
    }
    Ok(())
}

/// The latencies of every (write, node) pair, and the per-write maximum.
fn report(
    cluster: &Cluster,
    config: &Config,
    leader: usize,
    watchers: &[Watcher],
    written: &[Written],
    call_latencies: &[Duration],
    write_seconds: f64,
) {
    let mut all_received = Vec::new();
    let mut all_applied = Vec::new();
    let mut every_node = vec![Duration::ZERO; written.len()];
    let mut every_node_from_call = vec![Duration::ZERO; written.len()];
    let mut before_reply = 0usize;
    let mut resnapshots = 0usize;
    let mut per_node = Vec::new();
    for watcher in watchers {
        let arrivals = watcher.arrivals.lock().clone();
        // The first arrival is the initial snapshot; any later one means the
        // watcher fell behind the feed.
        resnapshots += arrivals.iter().skip(1).filter(|arrival| arrival.snapshot).count();
        let mut received = Vec::new();
        let mut applied = Vec::new();
        for (n, write) in written.iter().enumerate() {
            // Arrivals are in index order: the first at or past the write.
            let first = arrivals.partition_point(|arrival| arrival.index < write.index);
            let Some(arrival) = arrivals.get(first) else { continue };
            if arrival.received < write.returned {
                before_reply += 1;
            }
            received.push(arrival.received.saturating_duration_since(write.returned));
            let apply = arrival.applied.saturating_duration_since(write.returned);
            applied.push(apply);
            every_node[n] = every_node[n].max(apply);
            let from_call = arrival.applied.saturating_duration_since(write.called);
            every_node_from_call[n] = every_node_from_call[n].max(from_call);
        }
        let received_summary = Summary::of(&received);
        let applied_summary = Summary::of(&applied);
        say(format!(
            "  node on voter {} ({}): received {}; applied {}",
            watcher.position + 1,
            cluster.role(watcher.position),
            received_summary.human(),
            applied_summary.human(),
        ));
        per_node.push(merge(
            merge(
                json!({"voter": watcher.position + 1, "role": cluster.role(watcher.position)}),
                received_summary.json("received_"),
            ),
            applied_summary.json("applied_"),
        ));
        all_received.extend(received);
        all_applied.extend(applied);
    }
    let calls = Summary::of(call_latencies);
    let received = Summary::of(&all_received);
    let applied = Summary::of(&all_applied);
    let everywhere = Summary::of(&every_node);
    let everywhere_from_call = Summary::of(&every_node_from_call);
    say(format!(
        "commit-to-apply: {} {} writes via voter {} (leader) at {:.1}/s; write call {}",
        written.len(),
        config.write_kind.as_str(),
        leader + 1,
        written.len() as f64 / write_seconds,
        calls.human(),
    ));
    say(format!("  every node applied, from the reply: {}", everywhere.human()));
    say(format!("  every node applied, from the call (upper bound): {}", everywhere_from_call.human()));
    say(format!(
        "  over all {} (write, node) pairs: received {}; applied {}; {} received before the reply; {} re-snapshots",
        all_applied.len(),
        received.human(),
        applied.human(),
        before_reply,
        resnapshots,
    ));
    let measurement = json!({
        "measurement": "commit_to_apply",
        "kind": config.write_kind.as_str(),
        "writes": written.len(),
        "rate": round(written.len() as f64 / write_seconds),
        "pairs": all_applied.len(),
        "before_reply": before_reply,
        "resnapshots": resnapshots,
        "per_node": per_node,
    });
    let measurement = merge(measurement, calls.json("call_"));
    let measurement = merge(measurement, everywhere.json("all_nodes_"));
    let measurement = merge(measurement, everywhere_from_call.json("all_nodes_from_call_"));
    let measurement = merge(measurement, received.json("pair_received_"));
    emit(merge(measurement, applied.json("pair_applied_")));
}
