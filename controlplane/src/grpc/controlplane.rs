//! The `ControlPlane` service for data-plane nodes: the Watch stream, route
//! registration and heartbeats.
//!
//! Watch: each stream has its own task and a bounded buffer
//! ([`WATCH_BUFFER`] events). The task sends a snapshot first (unless the
//! node can resume from its `last_index`), then the feed's deltas in order.
//! A client that reads slowly blocks only its own task; if the feed moves
//! past it meanwhile, it gets a fresh snapshot instead of the lost deltas,
//! so memory stays bounded. The stream ends when the client goes away or
//! the member shuts down. Route batches and heartbeats go through the
//! [`Batcher`], which coalesces them into few Raft writes. A data-plane
//! credential speaks only for the node id it is bound to: a request naming
//! another id is `PermissionDenied`.

use std::sync::Arc;

use proto::controlplane::control_plane_server::ControlPlane;
use proto::controlplane::watch_event::Event;
use proto::controlplane::{
    HeartbeatRequest, RouteBatch, ShareSubscription as PbShareSubscription, WatchEvent, WatchRequest,
    WriteReply,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::auth::grant_of;
use super::status;
use crate::applied::SharedState;
use crate::batcher::Batcher;
use crate::feed::Since;
use crate::housekeeping::now_ms;
use crate::state::{Command, ShareSubscription};

/// Events buffered per Watch stream before its task waits for the client.
pub(crate) const WATCH_BUFFER: usize = 64;

pub(crate) struct ControlPlaneService {
    shared: Arc<SharedState>,
    batcher: Batcher,
    shutdown: watch::Receiver<bool>,
}

impl ControlPlaneService {
    pub fn new(shared: Arc<SharedState>, batcher: Batcher, shutdown: watch::Receiver<bool>) -> Self {
        ControlPlaneService { shared, batcher, shutdown }
    }
}

fn share_subscriptions(shares: Vec<PbShareSubscription>) -> Vec<ShareSubscription> {
    shares
        .into_iter()
        .map(|share| ShareSubscription {
            group: share.group,
            topic_filter: share.topic_filter,
            client_id: share.client_id,
        })
        .collect()
}

#[tonic::async_trait]
impl ControlPlane for ControlPlaneService {
    type WatchStream = ReceiverStream<Result<WatchEvent, Status>>;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let grant = grant_of(&request)?;
        let request = request.into_inner();
        grant.check_node(request.node_id)?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let watcher = Watcher {
            shared: self.shared.clone(),
            sender,
            shutdown: self.shutdown.clone(),
            resume_from: request.last_index,
        };
        let span = tracing::info_span!("watch", dataplane_node = request.node_id);
        tokio::spawn(watcher.run().instrument(span));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn register_routes(&self, request: Request<RouteBatch>) -> Result<Response<WriteReply>, Status> {
        let grant = grant_of(&request)?;
        let batch = request.into_inner();
        grant.check_node(batch.node_id)?;
        let command = Command::RouteBatch {
            node_id: batch.node_id,
            add: batch.add,
            remove: batch.remove,
            share_add: share_subscriptions(batch.share_add),
            share_remove: share_subscriptions(batch.share_remove),
            at_ms: now_ms(),
        };
        let (index, _) = status::applied(self.batcher.submit(command).await)?;
        Ok(Response::new(WriteReply { index }))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<WriteReply>, Status> {
        let grant = grant_of(&request)?;
        let heartbeat = request.into_inner();
        grant.check_node(heartbeat.node_id)?;
        let command = Command::Heartbeat {
            node_id: heartbeat.node_id,
            address: heartbeat.address,
            connections: heartbeat.connections,
            snapshot_index: heartbeat.snapshot_index,
            at_ms: now_ms(),
        };
        let (index, _) = status::applied(self.batcher.submit(command).await)?;
        Ok(Response::new(WriteReply { index }))
    }
}

/// One Watch stream's task.
struct Watcher {
    shared: Arc<SharedState>,
    sender: mpsc::Sender<Result<WatchEvent, Status>>,
    shutdown: watch::Receiver<bool>,
    resume_from: Option<u64>,
}

impl Watcher {
    async fn run(mut self) {
        let mut feed_changed = self.shared.feed().subscribe();
        let mut cursor = self.resume_from;
        let mut need_snapshot = cursor.is_none();
        loop {
            // Mark the feed as seen before reading it, so a publish that
            // lands after the read still wakes the wait below.
            feed_changed.borrow_and_update();
            let next = if need_snapshot { Since::Snapshot } else { self.shared.feed().since(cursor) };
            match next {
                Since::Snapshot => {
                    // A cheap copy (persistent maps) under the lock; the
                    // snapshot is built from it on a blocking thread, so a
                    // new node never holds up writes.
                    let applied = self.shared.copy();
                    let index = applied.last_applied_index();
                    let built = tokio::task::spawn_blocking(move || {
                        let snapshot = crate::pb_impl::state_snapshot(&applied);
                        crate::pb_impl::split_snapshot(snapshot, crate::pb_impl::SNAPSHOT_PART_BYTES)
                    })
                    .await;
                    let Ok((snapshot, parts)) = built else { return };
                    tracing::debug!(?index, parts = parts.len(), "sending a snapshot");
                    if !self.send(Event::Snapshot(snapshot)).await {
                        return;
                    }
                    for part in parts {
                        if !self.send(Event::SnapshotPart(part)).await {
                            return;
                        }
                    }
                    cursor = index;
                    need_snapshot = false;
                }
                Since::Deltas(deltas) if deltas.is_empty() => {
                    tokio::select! {
                        changed = feed_changed.changed() => if changed.is_err() { return },
                        _ = self.shutdown.wait_for(|stopped| *stopped) => return,
                    }
                }
                Since::Deltas(deltas) => {
                    for delta in deltas {
                        let index = delta.index;
                        if !self.send(Event::Delta((*delta).clone())).await {
                            return;
                        }
                        cursor = Some(index);
                    }
                }
            }
        }
    }

    /// Sends one event; false when the client left or the member stops.
    async fn send(&mut self, event: Event) -> bool {
        let event = WatchEvent { event: Some(event) };
        tokio::select! {
            sent = self.sender.send(Ok(event)) => sent.is_ok(),
            _ = self.shutdown.wait_for(|stopped| *stopped) => false,
        }
    }
}
